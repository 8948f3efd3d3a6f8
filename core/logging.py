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
record with less work: no stack walk to find the caller (it is one frame up),
and what `LogRecord.__init__` looks up per record (process, file and module
names) is copied from a record made once per process and call site.
Handlers, filters, levels and propagation are the standard ones.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from datetime import UTC, datetime
from json.encoder import encode_basestring

#: What LogRecord.__init__ sets, in the order it sets them ("name" first).
_RECORD_ATTRIBUTES = tuple(logging.LogRecord("", 0, "", 0, "", (), None).__dict__)
_STANDARD_ATTRIBUTES = frozenset(_RECORD_ATTRIBUTES) | {"message", "asctime", "taskName"}
#: The entry's own fields: an extra field of the same name is left out.
_RESERVED = frozenset({"time", "level", "logger", "message", "exception"})
_encode_other = json.JSONEncoder(ensure_ascii=False).encode


#: ".000Z" to ".999Z": the end of a timestamp, by millisecond.
_MILLISECONDS = tuple(f".{ms:03d}Z" for ms in range(1000))


#: (level name, logger name) -> the JSON text between the time and the message.
_HEADS: dict[tuple[str, str], str] = {}


class JsonFormatter(logging.Formatter):
    """Runs for every request (the authentication decision), so it stays lean.

    The line is written directly rather than through a dict and the JSON
    encoder: strings go through the encoder's own escaping, numbers through the
    encoder, anything else is left out. The timestamp text is cached per
    second. Extra fields come after the attributes LogRecord sets itself (the
    record's attributes keep their insertion order), so only those are visited;
    a record whose attributes were set in another order is searched whole.
    """

    _second: int = -1
    _second_text: str = ""

    def _time(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second_text = datetime.fromtimestamp(second, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._second = second
        return self._second_text + _MILLISECONDS[int((created - second) * 1000)]

    def format(self, record: logging.LogRecord) -> str:
        head = _HEADS.get((record.levelname, record.name))
        if head is None:
            head = _HEADS[record.levelname, record.name] = (
                f'", "level": {encode_basestring(record.levelname)}, '
                f'"logger": {encode_basestring(record.name)}, "message": '
            )
        parts = [
            '{"time": "',
            self._time(record.created),
            head,
            encode_basestring(record.getMessage()),
        ]
        attributes = record.__dict__
        names = list(attributes)
        if len(names) > len(_RECORD_ATTRIBUTES) and names[0] == "name":
            names = names[len(_RECORD_ATTRIBUTES) :]
        for name in names:
            if name in _STANDARD_ATTRIBUTES or name in _RESERVED or name[0] == "_":
                continue
            value = attributes[name]
            text = encode_basestring(value) if type(value) is str else _json_value(value)
            if text is not None:
                parts += (", ", encode_basestring(name), ": ", text)
        if record.exc_info:
            parts += (', "exception": ', encode_basestring(self.formatException(record.exc_info)))
        parts.append("}")
        return "".join(parts)


def _json_value(value: object) -> str | None:
    """A plain value as JSON text (what `json.dumps` writes), or None for anything else."""
    if isinstance(value, str):
        return encode_basestring(value)
    if value is None or isinstance(value, int | float):  # bool is an int
        return _encode_other(value)
    return None


# ---------------------------------------------------------------------- log_fields

#: Per process, by the calling function's code id: (code, logger, level, constant attributes).
_templates: dict[int, tuple] = {}
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
    code = frame.f_code
    # By the code object's id (its hash is computed on every call), checked on use.
    site = _templates.get(id(code))
    if site is None or site[0] is not code or site[1] is not logger or site[2] != level:
        site = _templates[id(code)] = (code, logger, level, _template(logger.name, level, code))
    template = site[3]
    now = time.time()
    record = _new_record(logging.LogRecord)
    record.__dict__ = attributes = template.copy()  # a clone of the table: no rehashing
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
