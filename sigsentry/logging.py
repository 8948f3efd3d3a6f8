"""Structured logs: one JSON object per line.

Every record carries `time`, `level`, `logger` and `message`; structured fields
passed with `extra=` (the authentication decision's `auth_outcome`,
`client_ip`, `key_id`, `key_prefix`, `user_id`, ...) become top-level fields,
so a log pipeline can filter on them without parsing the message. Only plain
values are written: objects such as Django's request are left out rather than
turned into text.

Callers never pass a credential, digest or password; the reliability tests
scan every record of a full run for them.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

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
        for name in sorted(attributes.keys() - _STANDARD_ATTRIBUTES):
            value = attributes[name]
            if not name.startswith("_") and isinstance(value, _PLAIN):
                entry.setdefault(name, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _encode(entry)


_encode = json.JSONEncoder(ensure_ascii=False).encode
