"""Fail open, and wait for an unreachable Redis once per request.

Throttles (`core.throttling`), a key's rate limit and counts (`apps.apikeys.gate`), the
dashboard's form nonces (`core.nonce`) and the two-factor token marks
(`apps.accounts.twofactor`) give up on Redis after 250 ms and let the request go on.
Once one of them has given up, the request's later Redis steps are skipped, so a
request waits at most 250 ms for Redis however many steps it has (a two-factor login
has three). The mark lives in a context variable, cleared when a request starts
(`core.middleware.AccessLogMiddleware`).
"""

from __future__ import annotations

from contextvars import ContextVar

from core import metrics

_gave_up: ContextVar[bool] = ContextVar("sigsentry_redis_gave_up", default=False)


def gave_up(scope: str) -> None:
    """Redis did not answer in time in this request, at the step `scope`: counted in
    `sigsentry_redis_fail_open_total`, and not waited for again."""
    metrics.record_redis_fail_open(scope)
    _gave_up.set(True)


def given_up() -> bool:
    return _gave_up.get()


def new_request() -> None:
    _gave_up.set(False)
