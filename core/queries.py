"""Bounded `IN` lists: a lookup by many values, asked in chunks.

SQLite bounds the parameters of one statement, and so does PostgreSQL once values are
bound by the server (DATABASE_POOLER=none: 65,535). A lookup whose values come from the
data (every key counted in the last minute, every row of an import) is asked
`IN_CHUNK` values at a time, however many there are.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import QuerySet

IN_CHUNK = 500


def filter_in_chunks(queryset: QuerySet, field_name: str, values: Iterable) -> list:
    """The rows of `queryset.filter(<field_name>__in=values)`, one query per IN_CHUNK."""
    values = list(values)
    found: list = []
    for start in range(0, len(values), IN_CHUNK):
        chunk = values[start : start + IN_CHUNK]
        found.extend(queryset.filter(**{f"{field_name}__in": chunk}))
    return found
