"""Statements over many rows, bounded: lookups by a list of values, upserts, and lists
whose length is bounded (`refuse_when_full`).

SQLite bounds the parameters of one statement, and so does PostgreSQL once values are
bound by the server (DATABASE_POOLER=none: 65,535). A lookup whose values come from the
data (every key counted in the last minute, every row of an import) is asked `IN_CHUNK`
values at a time, and an upsert or a bulk insert writes `ROWS_PER_STATEMENT` rows a
statement, however many there are (Django bounds a bulk insert's statement on SQLite
only: `bulk_create(..., batch_size=ROWS_PER_STATEMENT)`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.db import connection
from django.db.models import Model, QuerySet

from core.errors import ValidationFailed

IN_CHUNK = 500
ROWS_PER_STATEMENT = 500


def filter_in_chunks(queryset: QuerySet, field_name: str, values: Iterable) -> list:
    """The rows of `queryset.filter(<field_name>__in=values)`, one query per IN_CHUNK."""
    values = list(values)
    found: list = []
    for start in range(0, len(values), IN_CHUNK):
        chunk = values[start : start + IN_CHUNK]
        found.extend(queryset.filter(**{f"{field_name}__in": chunk}))
    return found


def upsert_largest(
    model: type[Model],
    unique: Sequence[str],
    largest: Sequence[str],
    rows: list[dict[str, Any]],
    *,
    added: Sequence[str] = (),
) -> None:
    """Insert `rows` (field name → value), or raise an existing row's `largest` fields to at
    least the given values and add to its `added` fields: `INSERT … ON CONFLICT (<unique>)
    DO UPDATE SET f = GREATEST(f, EXCLUDED.f), g = g + EXCLUDED.g`, one explicit statement
    per ROWS_PER_STATEMENT rows, every value bound.

    `unique` must be the fields of a unique constraint of `model`. Rows with the same
    unique fields are merged first (the largest of each `largest` value, the sum of each
    `added` one), and go in the order of their unique fields, so two upserts that meet lock
    their rows in the same order. PostgreSQL and SQLite (3.24+) take the same statement;
    SQLite spells GREATEST as the two-argument MAX.
    """
    meta = model._meta
    fields = [meta.get_field(name) for name in (*unique, *largest, *added)]
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    greatest = "GREATEST" if connection.vendor == "postgresql" else "MAX"
    columns = [quote(field.column) for field in fields]
    placeholders = "(" + ", ".join(["%s"] * len(fields)) + ")"
    conflict = ", ".join(columns[: len(unique)])
    kept = columns[len(unique) : len(unique) + len(largest)]
    summed = columns[len(unique) + len(largest) :]
    updates = ", ".join(
        [f"{c} = {greatest}({table}.{c}, EXCLUDED.{c})" for c in kept]
        + [f"{c} = {table}.{c} + EXCLUDED.{c}" for c in summed]
    )
    # Names from the model (quoted), values bound: nothing from a caller enters the text.
    insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "  # noqa: S608
    on_conflict = f" ON CONFLICT ({conflict}) DO UPDATE SET {updates}"
    # One row per unique tuple: a statement may not update the same row twice (PostgreSQL
    # refuses it).
    merged: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        key = tuple(str(row[name]) for name in unique)
        same = merged.get(key)
        if same is None:
            merged[key] = dict(row)
            continue
        for name in largest:
            same[name] = max(same[name], row[name])
        for name in added:
            same[name] += row[name]
    ordered = [merged[tuple_] for tuple_ in sorted(merged)]
    with connection.cursor() as cursor:
        for start in range(0, len(ordered), ROWS_PER_STATEMENT):
            chunk = ordered[start : start + ROWS_PER_STATEMENT]
            params = [
                field.get_db_prep_save(row[field.name], connection)
                for row in chunk
                for field in fields
            ]
            cursor.execute(insert + ", ".join([placeholders] * len(chunk)) + on_conflict, params)


def refuse_when_full(
    parent: QuerySet, children: QuerySet, most: int, field: str, message: str
) -> None:
    """Inside a transaction, before adding to a bounded list: lock its parent row (NO KEY:
    rows that merely refer to it do not wait), so additions to one list wait for each other
    and each counts the others, then 400 VALIDATION_ERROR on `field` once `children` holds
    `most` rows. (On SQLite every transaction takes the write lock as it begins: settings.)"""
    parent.select_for_update(no_key=True).exists()
    if children.count() >= most:
        raise ValidationFailed({field: [message]})
