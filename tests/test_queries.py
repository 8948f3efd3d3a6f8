"""Bounded IN lists (core.queries): a lookup by more values than one statement may bind."""

from __future__ import annotations

import uuid

import pytest

from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
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
