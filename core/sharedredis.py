"""The shared Redis of `REDIS_URL`, for the steps that need more than Django's cache API.

A key's rate limit and counts (`apps.apikeys.gate`) and the throttles' counters
(`core.throttling`) each send one command batch per request through this client: one
connection pool per process, 250 ms to connect and to answer, as the cache's.
"""

from __future__ import annotations

import functools

import redis
from django.conf import settings
from django.core.signals import setting_changed

REDIS_TIMEOUT_SECONDS = 0.25


@functools.cache
def redis_client() -> redis.Redis | None:
    """The shared Redis of `REDIS_URL` (one connection pool per process), or None."""
    if not settings.REDIS_URL:
        return None
    return redis.Redis.from_url(
        settings.REDIS_URL,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
    )


def _forget_client(*, setting, **kwargs) -> None:
    if setting == "REDIS_URL":
        redis_client.cache_clear()


setting_changed.connect(_forget_client)
