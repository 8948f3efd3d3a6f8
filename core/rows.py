"""One parameterized statement each: the read layer of the authentication path.

The hot lookups (an API key by digest, a project by id, and for `GET /v1/me` the
caller's memberships) run on every request, where building a queryset and a model
instance costs more than the database round trip itself. Each is one explicit
statement through `connection.cursor()` with its values as bound parameters,
returning small frozen records. A test holds every record field for field equal to
what the ORM reads.

Straight to PostgreSQL the values are bound by the server and psycopg prepares a
statement its connection has run five times (settings: Django's
`server_side_binding`, psycopg's `prepare_threshold`), so these statements are
parsed and planned once per connection, not once per request. Behind PgBouncer
in transaction mode nothing is prepared. Nothing here names or manages a
prepared statement.

The database adapters hand back a few column types differently (SQLite: UUIDs as
hex text, JSON as text, naive UTC datetimes), so the readers below bring both to
what the ORM returns. Timestamps are selected as ISO 8601 text
(`CAST(column AS TEXT)`, the same on both databases) and parsed by the standard
library's `datetime.fromisoformat`: Django's timestamptz loader is a pure-Python
subclass of psycopg's (it replaces the C one for every cursor) and cost the key
lookup ~25 µs a request; the text carries its UTC offset, so the instant does not
depend on the session's time zone. It needs PostgreSQL's default `DateStyle` (ISO),
as psycopg's own text loader does.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from django.db import connection
from django.db.models import Field


def fetch_one(sql: str, params: Sequence[Any]) -> tuple | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def fetch_all(sql: str, params: Sequence[Any]) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def bind(field: Field, value: Any) -> Any:
    """A value as the database stores `field` (a UUID is hex text on SQLite)."""
    return field.get_db_prep_value(value, connection)


def as_uuid(value: Any) -> uuid.UUID | None:
    if value is None or isinstance(value, uuid.UUID):
        return value
    return uuid.UUID(value)


def as_datetime(value: Any) -> datetime | None:
    """A timestamp column, read as ISO 8601 text (`CAST(column AS TEXT)`), or as the
    adapter's datetime, aware and in UTC as the ORM returns it."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)  # Django stores UTC (USE_TZ) where SQLite drops it
    return value.astimezone(UTC)


def as_strings(value: Any) -> tuple[str, ...]:
    """A JSON array of strings as a tuple (records are immutable)."""
    if isinstance(value, str):
        value = json.loads(value)
    return tuple(value or ())
