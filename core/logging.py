"""Structured logs: one JSON object per line, through python-json-logger.

Every line carries `time` (ISO 8601 UTC), `level`, `logger` and `message`;
fields passed with `extra=` (the access line's `status`, `auth_outcome`,
`client_ip`, `key_id`, `key_prefix`, `user_id`, ...) become top-level fields, so a
log pipeline filters on them without parsing the message. Only plain values are
written: an object such as Django's request (whose text would include the query
string) becomes null rather than text.

Callers never pass a credential, digest or password; the reliability tests scan
every line of a full run for them. A request's path is never written either: a reset
or invitation link carries a live token in its path, so lines name the URL pattern
(`request_route`), and Django's own lines that name the path ("Forbidden (CSRF cookie
not set.): /reset/…/", "Service Unavailable: /invitations/…/") have it replaced by
the pattern (`RedactRequestPath`, on those loggers and on the console handler).
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from contextvars import ContextVar
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


#: A path segment of 20 characters or more: in an unmatched path, it may be a token.
_LONG_SEGMENT = re.compile(r"[^/]{20,}")


def request_route(request: Any) -> str:
    """What a log line may say about a request's path: its URL pattern
    (`/reset/<str:token>/`). A path that matched nothing is written with its long
    segments masked (`/reset/…`): it may be a token link typed or cut wrong."""
    match = getattr(request, "resolver_match", None)
    if match is not None:
        return "/" + match.route
    return _LONG_SEGMENT.sub("…", request.path)


#: The id of the request being served (`AccessLogMiddleware`), for every line written meanwhile.
current_request_id: ContextVar[str | None] = ContextVar("sigsentry_request_id", default=None)


def new_request_id() -> str:
    """`req_` and 24 hex digits (96 random bits), as Stripe's `Request-Id`: sent back in the
    `X-Request-Id` header, so a user quotes it and an operator finds the request's lines.
    It grants nothing, but it is drawn from the kernel all the same: ids from `random` would
    hand a client the process's Mersenne Twister state (about 200 of them), and with it
    anything else ever drawn there."""
    return "req_" + secrets.token_hex(12)


class RequestIdFilter(logging.Filter):
    """Every line written while a request is served carries its `request_id` (the access
    line, a 500's traceback, a refused login's warning)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = current_request_id.get()
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        return True


class RedactRequestPath(logging.Filter):
    """Replaces the request's path among a record's arguments with `request_route`.

    Django passes the request as `extra` on its per-response lines (`django.request`,
    `django.security.*`), and the path as an argument, escaped as `unicode_escape`
    (Django's `log_response`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = getattr(record, "request", None)
        path = getattr(request, "path", None)
        if isinstance(path, str) and isinstance(record.args, tuple) and record.args:
            paths = {path, path.encode("unicode_escape").decode("ascii")}
            if any(isinstance(arg, str) and arg in paths for arg in record.args):
                route = request_route(request)
                record.args = tuple(
                    route if isinstance(arg, str) and arg in paths else arg for arg in record.args
                )
        return True
