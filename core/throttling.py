"""Fixed-window counters in the shared Redis (`REDIS_URL`), one round trip to count an
event (in one window, or in several at once: `enforce_all`); without it in Django's
cache, this process's memory.

Throttling fails open: if Redis is unreachable the counter is skipped, a
warning is logged and `sigsentry_redis_fail_open_total` counts it, so an
outage of Redis never blocks authentication. Keys are
keyed hashes (HMAC with `SECRET_KEY`), so no email or IP address is written to the
cache, nor can one be found again from it by guessing.

Scopes named `*_ip` count clients: their ident is a client IP address, and it
is counted as `core.net.throttle_subject` says (an IPv6 client by its /64), so
no caller can forget it. Other scopes count what their ident names (a
normalized email, an organization id).

Windows are aligned to `clock()` (seconds since the epoch, `time.time` unless
replaced): a window of `period` seconds is `clock() // period`, and Retry-After
is the time left in it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable
from typing import Protocol

from django.conf import settings
from django.core.cache import cache
from django.utils.crypto import salted_hmac

from core import failopen
from core.errors import RateLimited
from core.net import throttle_subject
from core.sharedredis import redis_client

logger = logging.getLogger("core.throttling")

#: Where the windows read the time. Tests replace it to hold a window still, so that no
#: window boundary passes in the middle of a test (tests/conftest.py `throttle_clock`).
clock: Callable[[], float] = time.time


def is_client_scope(scope: str) -> bool:
    """Whether `scope` counts clients by IP address (see the module docstring)."""
    return scope.endswith("_ip")


_NAMES = "core.throttling.counter-name"


def _cache_key(scope: str, ident: str, window: int) -> str:
    if is_client_scope(scope):
        ident = throttle_subject(ident) or ident
    # Keyed (SECRET_KEY): a plain hash of an email or IP is reversed by guessing them (a
    # privacy audit swept a /24 and a list of addresses against the names in Redis).
    digest = salted_hmac(_NAMES, f"{scope}:{ident}", algorithm="sha256").hexdigest()[:32]
    return f"ss:throttle:{scope}:{digest}:{window}"


def _window(scope: str) -> tuple[int, int, int, int]:
    limit, period = settings.THROTTLE_RATES[scope]
    now = int(clock())
    window = now // period
    retry_after = (window + 1) * period - now
    return limit, period, window, retry_after


class Along(Protocol):
    """Redis commands of a caller's own, sent in the round trip that counts an event (a
    refused key's rate-limit window, read for its headers), so that the request costs
    Redis one round trip, not two. Only with Redis: without it nothing is queued."""

    def queue(self, pipe) -> None:
        """Add the commands to `pipe` (a redis-py pipeline, after the counter's)."""

    def answer(self, replies: list) -> None:
        """Their replies, in order; a command that failed has its exception there."""


_COUNT_ALL_OR_NONE = """
local full, any = {}, false
for i, key in ipairs(KEYS) do
  full[i] = 0
  if tonumber(redis.call('GET', key) or '0') >= tonumber(ARGV[2 * i - 1]) then
    full[i] = 1
    any = true
  end
end
if not any then
  for i, key in ipairs(KEYS) do
    redis.call('SET', key, 0, 'EX', ARGV[2 * i], 'NX')
    redis.call('INCR', key)
  end
end
return full
"""


class _RedisCounters:
    """The windows' counters in the shared Redis: one round trip to count an event, so a
    failed credential costs one, as a key's rate limit and counts do."""

    def __init__(self, client) -> None:
        self.client = client
        #: DECR only a counter that is still there: one that expired stays gone
        self.decr_live = client.register_script(
            "if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('DECR', KEYS[1]) end"
        )
        #: Count one event in every window (ARGV: limit, ttl of each), or in none if one is
        #: full; the reply says which are full (1) and which are not (0).
        self.count_all_or_none = client.register_script(_COUNT_ALL_OR_NONE)

    def count(self, key: str, ttl: int, along: Along | None = None) -> int:
        pipe = self.client.pipeline()  # MULTI/EXEC: the window's counter never lacks its expiry
        pipe.set(key, 0, ex=ttl, nx=True)
        pipe.incr(key)
        if along is None:
            return pipe.execute()[1]
        along.queue(pipe)
        replies = pipe.execute(raise_on_error=False)  # an error of the caller's is its own
        if isinstance(replies[1], Exception):
            raise replies[1]
        along.answer(replies[2:])
        return replies[1]

    def count_if_room(self, windows: list[tuple[str, int, int]]) -> list[bool]:
        # One EVALSHA: scripts run whole, so no other count comes between the check and
        # the counts (EVAL once more if Redis has lost the script, after a restart).
        keys = [key for key, _limit, _ttl in windows]
        args = [n for _key, limit, ttl in windows for n in (limit, ttl)]
        return [bool(full) for full in self.count_all_or_none(keys=keys, args=args)]

    def read(self, key: str) -> int:
        return int(self.client.get(key) or 0)

    def give_back(self, key: str) -> None:
        self.decr_live(keys=[key])

    def forget(self, key: str) -> None:
        self.client.delete(key)


class _CacheCounters:
    """The same through Django's cache: this process's memory when there is no Redis."""

    def count(self, key: str, ttl: int, along: Along | None = None) -> int:
        return 1 if cache.add(key, 1, timeout=ttl) else cache.incr(key)

    def count_if_room(self, windows: list[tuple[str, int, int]]) -> list[bool]:
        # Counted first and given back if one is full, so two threads of this process
        # never both take a window's last place (one may be refused while the other's
        # count is given back: a refusal too many, never a count too many).
        counted = [self.count(key, ttl) for key, _limit, ttl in windows]
        full = [count > limit for count, (_key, limit, _ttl) in zip(counted, windows, strict=True)]
        if any(full):
            for key, _limit, _ttl in windows:
                self.give_back(key)
        return full

    def read(self, key: str) -> int:
        return cache.get(key) or 0

    def give_back(self, key: str) -> None:
        with contextlib.suppress(ValueError):  # the window ended and its count expired
            cache.decr(key)

    def forget(self, key: str) -> None:
        cache.delete(key)


@functools.lru_cache(maxsize=1)
def _counters_for(client) -> _RedisCounters | _CacheCounters:
    return _CacheCounters() if client is None else _RedisCounters(client)


def _counters() -> _RedisCounters | _CacheCounters:
    return _counters_for(redis_client())


def _fail_open(what: str, scope: str) -> None:
    """The cache did not answer: logged, counted, and not waited for again in this request."""
    logger.warning("throttle cache unavailable; %s %s", scope, what)
    failopen.gave_up(scope)


def _count(
    scope: str, ident: str | None, along: Along | None = None
) -> tuple[int, int, str, int] | None:
    """Count one event in `ident`'s current window: (count, limit, cache key, Retry-After),
    or None when there is nothing to count or the cache does not answer (fail open).
    `along`'s commands go in the same round trip, when there is one."""
    if not ident:
        return None
    limit, period, window, retry_after = _window(scope)
    key = _cache_key(scope, ident, window)
    if failopen.given_up():
        return None  # the cache did not answer earlier in this request: not waited for again
    try:
        count = _counters().count(key, period + 1, along)
    except Exception:  # the cache is down: degrade to no throttling, never to an error
        _fail_open("not counted", scope)
        return None
    return count, limit, key, retry_after


def hit(scope: str, ident: str | None, along: Along | None = None) -> int | None:
    """Count one event; return seconds to wait if the limit is now exceeded, else None.
    `along`: commands of the caller's for the same round trip (see `Along`)."""
    counted = _count(scope, ident, along)
    if counted is None:
        return None
    count, limit, _key, retry_after = counted
    return retry_after if count > limit else None


def attempt(scope: str, ident: str | None) -> Callable[[], None]:
    """Count an attempt before it is checked: 429 RATE_LIMITED past the limit. Returns what
    gives the count back, for an attempt that succeeds (scopes that count failures).

    Counting first is what makes the limit hold under concurrency: a check made before
    any attempt is counted lets a burst of simultaneous attempts all pass it (ten wrong
    passwords allowed, fifty verified). The count given back is the same window's.
    """
    counted = _count(scope, ident)
    if counted is None:
        return _nothing
    count, limit, key, retry_after = counted
    if count > limit:
        raise RateLimited(retry_after)
    return _giving_back(scope, [key])


def _giving_back(scope: str, keys: list[str]) -> Callable[[], None]:
    """What gives one count back in each window of `keys` (`attempt`, `enforce_all`); fails
    open as the count did."""

    def give_back() -> None:
        for key in keys:
            if failopen.given_up():
                return
            try:
                _counters().give_back(key)
            except Exception:
                _fail_open("not given back", scope)

    return give_back


def _nothing() -> None:
    return None


@contextlib.contextmanager
def counting_failures(
    failures: tuple[str, str | None], *, every: tuple[str, str | None] | None = None
):
    """Around a credential check: `every` counts each attempt, `failures` each one the block
    ends with an exception (a wrong password or code), both counted before the check runs,
    so a burst of simultaneous guesses cannot pass before any is counted; a block that
    ends normally, or in 429 RATE_LIMITED (a nested limit refused it unchecked), gives its
    `failures` count back. 429 RATE_LIMITED past either limit.
    """
    give_back = attempt(*failures)
    try:
        if every is not None:
            enforce(*every)
        yield
    except RateLimited:
        give_back()  # not checked: not a failure
        raise
    give_back()


def enforce_all(scopes: tuple[str, ...], ident: str | None) -> Callable[[], None]:
    """Count one event in the window of each of `scopes` (the hour and the day of one
    budget) if every one has room, in one Redis round trip; else count it in none and
    raise 429 RATE_LIMITED, with Retry-After the longest wait among the full windows.
    Returns what gives the counts back, for an event refused later (nothing stored).

    For a budget of what is stored: a refusal is nothing stored, so it uses no window's
    budget (an event the hour refuses takes none of the day's), unlike `enforce`, which
    counts every event, refused ones too."""
    if not ident:
        return _nothing
    windows, waits = [], []  # (cache key, limit, ttl) of each, and the wait past each
    for scope in scopes:
        limit, period, window, retry_after = _window(scope)
        windows.append((_cache_key(scope, ident, window), limit, period + 1))
        waits.append(retry_after)
    if failopen.given_up():
        return _nothing
    try:
        full = _counters().count_if_room(windows)
    except Exception:  # the cache is down: degrade to no throttling, never to an error
        _fail_open("not counted", scopes[0])
        return _nothing
    if any(full):
        raise RateLimited(max(wait for wait, no_room in zip(waits, full, strict=True) if no_room))
    return _giving_back(scopes[0], [key for key, _limit, _ttl in windows])


def is_limited(scope: str, ident: str | None) -> int | None:
    """Seconds to wait if `ident` is over the limit in this window (without counting)."""
    if not ident:
        return None
    limit, _period, window, retry_after = _window(scope)
    if failopen.given_up():
        return None
    try:
        count = _counters().read(_cache_key(scope, ident, window))
    except Exception:
        _fail_open("not checked", scope)
        return None
    return retry_after if count >= limit else None


def enforce(scope: str, ident: str | None, message: str | None = None) -> None:
    """Count one event and raise 429 RATE_LIMITED (with `message`, else the usual one)
    when over the limit."""
    retry_after = hit(scope, ident)
    if retry_after is not None:
        raise RateLimited(retry_after, message)


def reset(scope: str, ident: str) -> None:
    _limit, _period, window, _retry = _window(scope)
    if failopen.given_up():
        return
    try:
        _counters().forget(_cache_key(scope, ident, window))
    except Exception:
        _fail_open("not reset", scope)
