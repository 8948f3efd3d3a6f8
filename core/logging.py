"""Structured logs: one JSON object per line, through python-json-logger.

Every line carries `time` (ISO 8601 UTC), `level`, `logger` and `message`;
fields passed with `extra=` (the access line's `status`, `auth_outcome`,
`client_ip`, `key_id`, `key_prefix`, `user_id`, ...) become top-level fields, so a
log pipeline filters on them without parsing the message. Only plain values are
written: an object such as Django's request (whose text would include the query
string) becomes null rather than text.

Callers never pass a credential, digest or password; the reliability tests scan
every line of a full run for them.
"""

from __future__ import annotations

import time
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

LINE_FORMAT = "{asctime}{levelname}{name}{message}"
RENAMED = {"asctime": "time", "levelname": "level", "name": "logger", "exc_info": "exception"}


def _plain_only(value: Any) -> None:
    """What the JSON encoder cannot write itself is left out (null), never turned into text."""
    return None


class JsonFormatter(_BaseJsonFormatter):
    converter = time.gmtime
    default_time_format = "%Y-%m-%dT%H:%M:%S"
    default_msec_format = "%s.%03dZ"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("fmt", LINE_FORMAT)
        kwargs.setdefault("style", "{")
        kwargs.setdefault("rename_fields", RENAMED)
        kwargs.setdefault("json_default", _plain_only)
        super().__init__(*args, **kwargs)
