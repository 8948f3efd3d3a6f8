"""Fail open, and wait for an unreachable Redis once per request and once a second.

Throttles (`core.throttling`), a key's rate limit and counts (`apps.apikeys.gate`), the
dashboard's form nonces (`core.nonce`) and the two-factor token marks
(`apps.accounts.twofactor`) give up on Redis after 250 ms and let the request go on.
Once one of them has given up, the request's later Redis steps are skipped, so a
request waits at most 250 ms for Redis however many steps it has (a two-factor login
has three). The mark lives in a context variable, cleared when a request starts
(`core.middleware.AccessLogMiddleware`).

The process then rests from Redis for `REST_SECONDS`: its other requests skip their Redis
steps too, and the first to start after the rest tries again. A Redis that hangs (a
failover, a partition: connections accepted, nothing answered) would otherwise cost every
request its 250 ms and hold every thread of every worker, a throughput of a few requests
a second per thread; with the rest, one request a second per process waits. Nothing is
refused either way: while Redis is skipped, limits and counts are off, as when it times
out. A change of `REDIS_URL` or of the cache (a new Redis) ends the rest.

A give-up is counted in `sigsentry_redis_fail_open_total{scope}` in the web's processes, and
in the database while a project command runs (`counted_in_database`): the worker's process is
never scraped. There, one given up in a transaction is written once its task ends (django-tasks'
`task_finished`) or its command does, whatever the transaction's outcome: written in it, the
count went with the task's rollback.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.core.signals import setting_changed
from django.db import connection
from django_tasks.signals import task_finished

from core import metrics

REST_SECONDS = 1.0

#: What the rest is measured on (tests move it)
clock = time.monotonic

_gave_up: ContextVar[bool] = ContextVar("sigsentry_redis_gave_up", default=False)
_resting_until = 0.0  # this process skips Redis until then (`clock`'s seconds)
#: Whether this process's give-ups are counted in the database rather than in its memory:
#: while a project command runs (`core.management.base.BaseCommand`: the worker, cron's
#: `flush_usage`), whose process no scrape reaches.
_counted_in_database = False
#: This command's give-ups not yet in the database (`write_counted`).
_unwritten = 0


@contextmanager
def counted_in_database() -> Iterator[None]:
    """Give-ups meanwhile are counted in the database (`sigsentry_worker_redis_fail_open_total`)."""
    global _counted_in_database
    before, _counted_in_database = _counted_in_database, True
    try:
        yield
    finally:
        _counted_in_database = before
        write_counted()


def write_counted(**_signal) -> None:
    """Write this command's give-ups not yet in the database: at once outside a transaction,
    else once the task or the command ends, out of the transactions that may roll back.
    Kept for the next time when the database fails too (`metrics.record_worker_redis_fail_open`
    logs it)."""
    global _unwritten
    if _unwritten and metrics.record_worker_redis_fail_open(_unwritten):
        _unwritten = 0


def gave_up(scope: str) -> None:
    """Redis did not answer in time in this request, at the step `scope`: counted in
    `sigsentry_redis_fail_open_total`, and not waited for again in this request, nor in
    this process for `REST_SECONDS`."""
    global _resting_until, _unwritten
    if _counted_in_database:
        _unwritten += 1
        if not connection.in_atomic_block:
            write_counted()
    else:
        metrics.record_redis_fail_open(scope)
    _gave_up.set(True)
    _resting_until = clock() + REST_SECONDS


def given_up() -> bool:
    """Whether to skip Redis: it gave up earlier in this request, or the process rests."""
    return _gave_up.get() or clock() < _resting_until


def new_request() -> None:
    _gave_up.set(False)


def end_rest() -> None:
    global _resting_until
    _resting_until = 0.0


def _end_rest_on_new_redis(*, setting, **kwargs) -> None:
    if setting in ("REDIS_URL", "CACHES"):
        end_rest()


setting_changed.connect(_end_rest_on_new_redis)
task_finished.connect(write_counted, dispatch_uid="sigsentry.failopen.write_counted")
