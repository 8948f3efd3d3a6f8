"""Bounded statements (core.queries): lookups by more values than one statement may bind,
and upserts that keep the largest value."""

from __future__ import annotations

import uuid

import pytest
from django.utils import timezone

from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey, KeyUsage
from core import queries
from tests.factories import make_key

pytestmark = pytest.mark.django_db


def test_a_lookup_by_70000_values_is_asked_in_chunks(project):
    """More than PostgreSQL binds in one statement (65,535, DATABASE_POOLER=none) and than
    SQLite's default bound: the rows found are those one unbounded IN would find."""
    kept, _ = make_key(KeyKind.SECRET, project=project)
    ids = [uuid.uuid4() for _ in range(70_000)] + [kept.id]

    found = queries.filter_in_chunks(ApiKey.objects.only("id"), "id", ids)

    assert [key.id for key in found] == [kept.id]


def test_every_chunk_is_asked(project, monkeypatch, django_assert_num_queries):
    monkeypatch.setattr(queries, "IN_CHUNK", 2)
    keys = [make_key(KeyKind.SECRET, project=project)[0] for _ in range(5)]

    with django_assert_num_queries(3):
        found = queries.filter_in_chunks(ApiKey.objects.all(), "id", [k.id for k in keys])

    assert sorted(key.id for key in found) == sorted(key.id for key in keys)


def test_an_upsert_inserts_and_keeps_the_largest_value(project, monkeypatch):
    monkeypatch.setattr(queries, "ROWS_PER_STATEMENT", 2)
    keys = [make_key(KeyKind.SECRET, project=project)[0] for _ in range(3)]
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    unique, largest = ("key", "granularity", "start", "epoch"), ("requests", "refused")

    def rows(requests, refused):
        return [
            {
                "key": str(k.id),
                "granularity": "hour",
                "start": hour,
                "epoch": "e1",
                "requests": requests,
                "refused": refused,
            }
            for k in keys
        ]

    queries.upsert_largest(KeyUsage, unique, largest, rows(5, 1))
    queries.upsert_largest(KeyUsage, unique, largest, rows(3, 2))  # an older copy, then newer

    stored = KeyUsage.objects.filter(key__in=keys).values_list(
        "key_id", "start", "requests", "refused"
    )
    assert sorted((r[2], r[3]) for r in stored) == [(5, 2)] * 3
    assert {r[1] for r in stored} == {hour}
    assert KeyUsage.objects.count() == 3


def test_rows_with_the_same_unique_fields_in_one_upsert_keep_the_largest(project):
    """PostgreSQL refuses a statement that updates one row twice: such rows are merged."""
    key, _ = make_key(KeyKind.SECRET, project=project)
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    bucket = {"key": str(key.id), "granularity": "hour", "start": hour, "epoch": "e1"}

    queries.upsert_largest(
        KeyUsage,
        ("key", "granularity", "start", "epoch"),
        ("requests", "refused"),
        [bucket | {"requests": 7, "refused": 0}, bucket | {"requests": 4, "refused": 2}],
    )

    assert list(KeyUsage.objects.values_list("requests", "refused")) == [(7, 2)]


def test_an_upsert_adds_to_its_added_fields(project):
    """A fold adds its rows' requests to a FOLDED row, and keeps the latest time seen."""
    key, _ = make_key(KeyKind.SECRET, project=project)
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    bucket = {"key": str(key.id), "granularity": "hour", "start": hour, "epoch": "e1"}

    def upsert(rows):
        queries.upsert_largest(
            KeyUsage,
            ("key", "granularity", "start", "epoch"),
            ("refused",),
            rows,
            added=("requests",),
        )

    upsert([bucket | {"requests": 7, "refused": 1}, bucket | {"requests": 4, "refused": 3}])
    upsert([bucket | {"requests": 5, "refused": 2}])

    assert list(KeyUsage.objects.values_list("requests", "refused")) == [(16, 3)]
