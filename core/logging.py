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

A database error's traceback is written without the values PostgreSQL quotes: its DETAIL,
which quotes the row (`Key (digest)=(…) already exists.`, `Failing row contains (…)`), the
value a DataError's first line quotes (`invalid input syntax for type uuid: "…"`) and the
statement's line it points at (`LINE 1: …`, the values in it as psycopg sent them):
`without_row_values`, in the formatter's `formatException`, so only lines with a traceback
pay for it. The message, exception and stack of every line but the access line (built from
the route pattern, ids and a key's prefix, never a client's text) are read for credentials,
as error bodies are: a key or token a line quotes from what a client sent is masked
(`core.errors.without_credentials`). Named fields (`extra=`) are the caller's own values.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

from core.errors import without_credentials

LINE_FORMAT = "{asctime}{levelname}{name}{message}"
RENAMED = {"asctime": "time", "levelname": "level", "name": "logger", "exc_info": "exception"}


def _plain_only(value: Any) -> None:
    """What the JSON encoder cannot write itself is left out (null), never turned into text."""
    return None


#: PostgreSQL's DETAIL, as psycopg writes it in an error's text (a line of its own, up to the
#: HINT or CONTEXT line, the traceback's next chained exception or the end): it quotes values
#: of the row, a digest or an address (found by an observability audit: a unique violation in
#: a task logged the digest). Not up to a blank line: a value quoted may hold one ("Failing
#: row contains (…)" with an analysis's input), and the rest of the row was written.
_DETAIL = re.compile(
    r"^DETAIL:  .*?(?=\n(?:HINT:  |CONTEXT:  |\nThe above exception|\nDuring handling of)|\n?\Z)",
    re.MULTILINE | re.DOTALL,
)
ROW_VALUES_NOT_WRITTEN = "DETAIL:  (not written: it quotes the row's values)"
#: The first line of PostgreSQL's message for a value it could not take (psycopg's DataError
#: family: `invalid input syntax for type uuid: "…"`, `invalid input value for enum mood: "…"`)
#: after the exception's name (psycopg's class, then Django's wrapper of it): the value, quoted
#: as given, so up to the message's end (it may hold a quote or a line break), never past the
#: traceback's next exception.
_QUOTED_VALUE = re.compile(
    r"^((?:psycopg\.errors\.\w+|django\.db\.utils\.\w+): [^\n]*?: )"
    r'"(?:(?!\nTraceback \(most recent call last\)).)*?"'
    r"(?=\nLINE \d+: |\n(?:DETAIL|HINT|CONTEXT):  |\n\n(?:The above|During handling)|\n?\Z)",
    re.MULTILINE | re.DOTALL,
)
VALUE_NOT_WRITTEN = r"\1(value not written)"
#: The statement's line PostgreSQL points at, and its caret: Django's psycopg 3 backend binds
#: on the client, so it holds the values as sent (`LINE 1: SELECT '…'::uuid`).
_STATEMENT_LINE = re.compile(r"^(LINE \d+: ).*(?:\n *\^)?$", re.MULTILINE)
STATEMENT_NOT_WRITTEN = r"\1(not written: it holds the statement's values)"
#: Bound by the server (DATABASE_POOLER=none), a value PostgreSQL could not take is quoted in
#: the CONTEXT instead, up to `log_parameter_max_length_on_error` characters (a server's
#: setting: whole at -1), as an SQL literal (`'…'`, a quote doubled).
_PARAMETER_VALUE = re.compile(
    r"^(CONTEXT:  (?:unnamed portal|portal \"[^\"\n]*\") parameter \$\d+) = '(?:[^']|'')*'",
    re.MULTILINE,
)
PARAMETER_NOT_WRITTEN = r"\1 = (value not written)"


def without_row_values(text: str) -> str:
    """`text` (a traceback) without the values a PostgreSQL error quotes: every DETAIL, a
    DataError's value on its first line, the statement's line an error points at and the
    parameter its CONTEXT quotes."""
    if ': "' in text:
        text = _QUOTED_VALUE.sub(VALUE_NOT_WRITTEN, text)
    if "LINE " in text:
        text = _STATEMENT_LINE.sub(STATEMENT_NOT_WRITTEN, text)
    if "DETAIL:  " in text:
        text = _DETAIL.sub(ROW_VALUES_NOT_WRITTEN, text)
    if "portal" in text:
        text = _PARAMETER_VALUE.sub(PARAMETER_NOT_WRITTEN, text)
    return text


#: The one line per request (`core.middleware.AccessLogMiddleware`).
ACCESS_LOGGER = "sigsentry.access"
#: A line's texts that quote what its caller passed: the message with its arguments, the
#: exception and stack (after `RENAMED`).
_FREE_TEXT = ("message", "exception", "stack_info")


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

    def formatException(self, ei) -> str:
        return without_row_values(super().formatException(ei))

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        if log_data.get("logger") == ACCESS_LOGGER:
            return log_data  # no client text in it; skipped on every request's path
        for name in _FREE_TEXT:  # the named fields (`extra=`, a key's prefix) are ours
            if isinstance(log_data.get(name), str):
                log_data[name] = without_credentials(log_data[name])
        return log_data


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


#: Where the request's id is kept on the request itself (`request.META`), for the lines
#: written about it after `AccessLogMiddleware` returned (Django's `log_response`).
REQUEST_ID_META = "sigsentry.request_id"


@contextmanager
def serving(request_id: str | None) -> Iterator[None]:
    """Lines written inside carry `request_id`: the request's own, or work it left to be
    done after its response (its emails)."""
    context = current_request_id.set(request_id)
    try:
        yield
    finally:
        current_request_id.reset(context)


class RequestIdFilter(logging.Filter):
    """Every line written while a request is served carries its `request_id` (the access
    line, a 500's traceback, a refused login's warning), and so does a line about a request
    written after the middleware returned: Django's "Internal Server Error" and "Service
    Unavailable" lines of an API error (`log_response`, which passes the request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if hasattr(record, "request_id"):
            return True
        request_id = current_request_id.get()
        if request_id is None:
            meta = getattr(getattr(record, "request", None), "META", None)
            request_id = meta.get(REQUEST_ID_META) if isinstance(meta, dict) else None
        if request_id is not None:
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


class WithoutHostValue(logging.Filter):
    """Django's refusal of a `Host` header (`django.security.DisallowedHost`) quotes the
    client's text whole, up to 16 KB and whatever it holds (a key, found by an audit),
    with a traceback: the line says a Host was refused, and its request id and the
    access line which request."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = "Invalid HTTP_HOST header (its value is not written)", ()
        record.exc_info = record.exc_text = None
        return True
