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
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, tz=UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in record.__dict__.items():
            if (
                name not in _STANDARD_ATTRIBUTES
                and not name.startswith("_")
                and isinstance(value, _PLAIN)
            ):
                entry.setdefault(name, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)
