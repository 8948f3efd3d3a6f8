"""Structured logs: one JSON object per line.

Every record carries `time`, `level`, `logger` and `message`; structured fields
passed with `extra=` (the authentication decision's `auth_outcome`,
`client_ip`, `key_id`, `key_prefix`, `user_id`, ...) become top-level fields,
so a log pipeline can filter on them without parsing the message. Only plain
values are written: objects such as Django's request are left out rather than
turned into text.

Callers never pass a credential, digest or password; the reliability tests
scan every record of a full run for them.

`log_fields` is `logger.log(level, msg, *args, extra=fields)` for the lines
written on every request (the authentication decision). It builds the same
record with less work: no stack walk to find the caller (the caller passes
where it is), and what `LogRecord.__init__` looks up per record (process,
file and module names) is copied from a record made once per process and
call site. Handlers, filters, levels and propagation are the standard ones.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from datetime import UTC, datetime
from json.encoder import c_make_encoder, encode_basestring

_STANDARD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
_PLAIN = (str, int, float, bool, type(None))


class JsonFormatter(logging.Formatter):
    """Runs for every request (the authentication decision), so it stays lean.

    The timestamp text is cached per second and only the extra fields are
    visited (a set difference), not every attribute of the record.
    """

    _second: int = -1
    _second_text: str = ""

    def _time(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second_text = datetime.fromtimestamp(second, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._second = second
        return f"{self._second_text}.{int((created - second) * 1000):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self._time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        attributes = record.__dict__
        extra = attributes.keys() - _STANDARD_ATTRIBUTES
        if extra:
            for name in sorted(extra):
                value = attributes[name]
                if not name.startswith("_") and isinstance(value, _PLAIN):
                    entry.setdefault(name, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _encode(entry)


def _encoder():
    """`json.JSONEncoder(ensure_ascii=False).encode`, same output, less work per call.

    `encode` sets up the C encoder anew on every call; this sets it up once (with
    the arguments `JSONEncoder.iterencode` passes it, minus the circular-reference
    check a flat dict of plain values does not need). Anything it refuses goes
    through `encode`, and without the C encoder `encode` is used throughout.
    """
    plain = json.JSONEncoder(ensure_ascii=False).encode

    def refuse(value):
        raise TypeError(type(value).__name__)

    try:
        encode = c_make_encoder(  # type: ignore[misc]
            None, refuse, encode_basestring, None, ": ", ", ", False, False, True
        )
    except TypeError:  # no C encoder (None), or another signature
        return plain

    def fast(entry: dict) -> str:
        try:
            return "".join(encode(entry, 0))
        except (TypeError, ValueError):
            return plain(entry)

    return fast


_encode = _encoder()

# ---------------------------------------------------------------------- log_fields

#: Per process: (logger name, level, code object of the call site) -> the record's constant part.
_templates: dict[tuple, dict] = {}
os.register_at_fork(after_in_child=_templates.clear)
_new_record = object.__new__
_current_thread = threading.current_thread
_start_time = logging._startTime


def log_fields(logger: logging.Logger, level: int, msg: str, args: tuple, fields: dict) -> None:
    """`logger.log(level, msg, *args, extra=fields)`, attributed to the caller, for hot paths.

    The caller checks `logger.isEnabledFor(level)` first; `fields` never name a
    LogRecord attribute. With a custom record factory installed
    (`logging.setLogRecordFactory`), the standard path runs.
    """
    frame = sys._getframe(1)
    if logging.getLogRecordFactory() is not logging.LogRecord:
        record = logger.makeRecord(
            logger.name,
            level,
            frame.f_code.co_filename,
            frame.f_lineno,
            msg,
            args,
            None,
            frame.f_code.co_name,
            fields,
        )
        logger.handle(record)
        return
    site = (logger.name, level, frame.f_code)
    template = _templates.get(site)
    if template is None:
        template = _templates[site] = _template(logger.name, level, frame.f_code)
    now = time.time()
    record = _new_record(logging.LogRecord)
    attributes = record.__dict__
    attributes.update(template)
    attributes["msg"] = msg
    attributes["args"] = args
    attributes["lineno"] = frame.f_lineno
    attributes["created"] = now
    attributes["msecs"] = int((now - int(now)) * 1000) + 0.0
    attributes["relativeCreated"] = (now - _start_time) * 1000
    if template["thread"] is not None:
        attributes["thread"] = threading.get_ident()
        attributes["threadName"] = _current_thread().name
    attributes.update(fields)
    logger.handle(record)


def _template(name: str, level: int, code) -> dict:
    """What LogRecord.__init__ would set that does not change within this process and call site."""
    record = logging.LogRecord(name, level, code.co_filename, 0, "", (), None, code.co_name)
    return dict(record.__dict__)
