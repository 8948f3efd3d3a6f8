"""Helpers for the key usage tests: where counts live, and requests that count."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connection

from apps.apikeys.gate.store import local_store
from apps.apikeys.models import ApiKey
from core.sharedredis import redis_client

requires_redis = pytest.mark.skipif(
    not settings.REDIS_URL, reason="counts are shared across processes only through REDIS_URL"
)
requires_postgres_and_redis = pytest.mark.skipif(
    connection.vendor != "postgresql" or not settings.REDIS_URL,
    reason="two servers counting exactly need PostgreSQL and REDIS_URL (run with both set)",
)


def counted_key_ids() -> set[str]:
    """Every key id that has a counter, a rate-limit window or a pending copy, anywhere."""
    client = redis_client()
    if client is None:
        return local_store().key_ids()
    ids = set()
    for name in client.scan_iter("ss:*"):
        parts = name.decode().split(":")
        if parts[1] == "rlog":
            ids.add(parts[2])
        elif parts[1] == "u" and len(parts) > 3:
            ids.add(parts[3])
    ids |= {member.decode().split("|")[1] for member in client.smembers("ss:u:dirty")}
    return ids


def set_rate_limit(api_key: ApiKey, requests: int, per_seconds: int) -> None:
    ApiKey.objects.filter(id=api_key.id).update(
        rate_limit_requests=requests, rate_limit_seconds=per_seconds
    )
