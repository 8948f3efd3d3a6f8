"""`core.logging`: the JSON line format and `log_fields`, the hot-path record builder."""

from __future__ import annotations

import json
import logging
import os

import pytest

from core.logging import JsonFormatter, log_fields

#: Set per record, so never equal between two records.
PER_RECORD = {"created", "msecs", "relativeCreated", "lineno"}


class Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def kept():
    """A logger whose records are kept; its level, propagation, handlers and filters are
    put back afterwards, so the tests after this one find it as it was."""
    logger = logging.getLogger("sigsentry.test_logging")
    saved = (logger.level, logger.propagate, list(logger.handlers), list(logger.filters))
    handler = Keep()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, handler.records
    level, logger.propagate, logger.handlers[:], logger.filters[:] = saved
    logger.setLevel(level)


FIELDS = {"auth_outcome": "ok", "client_ip": "203.0.113.7", "key_id": "k-1"}


def both_ways(logger: logging.Logger) -> None:
    logger.info("auth outcome=%s ip=%s", "ok", "203.0.113.7", extra=FIELDS)
    log_fields(logger, logging.INFO, "auth outcome=%s ip=%s", ("ok", "203.0.113.7"), FIELDS)


def test_log_fields_makes_the_record_logger_log_makes(kept):
    logger, records = kept
    both_ways(logger)
    standard, fast = records
    assert type(fast) is logging.LogRecord
    assert fast.getMessage() == standard.getMessage() == "auth outcome=ok ip=203.0.113.7"
    same = {name: value for name, value in standard.__dict__.items() if name not in PER_RECORD}
    assert {name: fast.__dict__[name] for name in same} == same
    assert fast.__dict__.keys() == standard.__dict__.keys()
    assert (fast.funcName, fast.lineno) == ("both_ways", standard.lineno + 1)
    assert standard.created <= fast.created
    assert 0 <= fast.msecs < 1000
    assert JsonFormatter().format(fast)  # formats like any record


def test_log_fields_respects_the_level_filters_and_a_custom_record_factory(kept):
    logger, records = kept
    logger.addFilter(lambda record: record.getMessage() != "dropped")
    log_fields(logger, logging.INFO, "dropped", (), {})
    assert records == []

    default = logging.getLogRecordFactory()

    def factory(*args, **kwargs):
        record = default(*args, **kwargs)
        record.via_factory = True
        return record

    logging.setLogRecordFactory(factory)
    try:
        log_fields(logger, logging.WARNING, "kept %s", ("once",), {"key_id": "k-2"})
    finally:
        logging.setLogRecordFactory(default)
    (record,) = records
    assert (record.via_factory, record.key_id, record.levelname) == (True, "k-2", "WARNING")
    assert record.getMessage() == "kept once"


def test_log_fields_names_the_process_that_logged_after_a_fork(kept):
    logger, records = kept
    both_ways(logger)  # the call site's template now exists in this process
    assert records[1].process == os.getpid()
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            records.clear()
            both_ways(logger)
            os.write(write_end, json.dumps([r.process for r in records]).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        processes = json.loads(pipe.read())
    os.waitpid(child, 0)
    assert processes == [child, child]


@pytest.mark.parametrize(
    "fields",
    [
        {"key_id": "k", "client_ip": None, "count": 3, "ratio": 0.5, "ok": True},
        {"label": 'Ünïcode “quotes” \\ and "escapes"\n', "emoji": "🔑"},
        {"nan": float("nan"), "inf": float("inf")},
    ],
)
def test_json_lines_are_what_the_json_module_writes(fields):
    record = logging.LogRecord("sigsentry.auth", logging.INFO, __file__, 1, "m %s", ("x",), None)
    record.__dict__.update(fields)
    record.request = object()  # not a plain value: left out
    record.created = 1_700_000_000.1239
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert line == json.dumps(entry, ensure_ascii=False)
    assert {name: entry[name] for name in fields} == json.loads(json.dumps(fields))
    assert (entry["level"], entry["logger"], entry["message"]) == ("INFO", "sigsentry.auth", "m x")
    assert "request" not in entry
    assert entry["time"] == "2023-11-14T22:13:20.123Z"
