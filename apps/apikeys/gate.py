"""Per-key usage counting and rate limits, in one round trip to Redis (SPEC §4.9, §4.10).

One Lua script does a request's Redis work atomically:

* **Rate limit** (keys with `rateLimit`): a sliding-window log (a sorted set of
  the accepted requests' times, `ss:rl:<key id>`), so "at most n in any
  s-second window" holds at the window's edges too, across every process. A
  refused request is not logged, so it consumes no budget.
* **Counting**: cumulative `r` (requests) and `f` (refused) fields in the key's
  UTC hour and day hashes, and per client IP a count and a last-seen time (the
  `RECENT_IPS_KEPT` most recent IPs). Every counter carries an expiry: hour and
  day buckets a few minutes after their period ends (they are copied to the
  database at least once a minute, `apps.apikeys.usage`), IPs after two days.
  Counters are cumulative within an *epoch* (one Redis lifetime, `ss:u:epoch`),
  so the copy can keep the largest value seen and never count twice. The IP
  counts can expire and start again within an epoch (a key used weekly), so
  their hash carries its own epoch in the field `#`, set when it is created.

Without `REDIS_URL` the same operations run in the process's memory: limits and
counts are then per process (the SQLite demo). When Redis cannot be reached in
250 ms the request goes on: no limit is enforced and that request's counts are
lost, with a warning in the log (fail open: a valid key is never refused
because Redis is down).
"""

from __future__ import annotations

import atexit
import functools
import logging
import math
import os
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis
from django.conf import settings
from django.core.signals import setting_changed
from rest_framework.throttling import BaseThrottle

from core.net import client_ip
from core.principal import AUTH_DECISION

logger = logging.getLogger("sigsentry.usage")

#: The `request.META` keys: the rate-limit state (for the X-RateLimit-* headers) and
#: whether this request's use was already counted.
RATE_LIMIT = "sigsentry.rate_limit"
COUNTED = "sigsentry.counted"

RECENT_IPS_KEPT = 10
BUCKET_GRACE_SECONDS = 300
IP_TTL_SECONDS = 2 * 86400
REDIS_TIMEOUT_SECONDS = 0.25

_SCRIPT = """
local key_id, now_ms = ARGV[1], tonumber(ARGV[2])
local count_req, count_ref, ip = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local limit_n, limit_ms, member = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]
local peek = ARGV[16] == '1'
local ip_count, ip_last = tonumber(ARGV[17]), tonumber(ARGV[18])
redis.call('SET', 'ss:u:epoch', ARGV[13], 'NX')
local epoch = redis.call('GET', 'ss:u:epoch')
local allowed, remaining, reset_ms = 1, -1, 0
if limit_n > 0 then
  -- The window follows Redis's clock, the same for every server process.
  local t = redis.call('TIME')
  now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local rl = 'ss:rl:' .. key_id
  redis.call('ZREMRANGEBYSCORE', rl, '-inf', now_ms - limit_ms)
  local used = redis.call('ZCARD', rl)
  if peek then
    -- refused before the limit's step: the window as it is, no budget used
  elseif used < limit_n then
    redis.call('ZADD', rl, now_ms, member)
    used = used + 1
  else
    allowed = 0
    count_ref = 1
  end
  remaining = limit_n - used
  local oldest = redis.call('ZRANGE', rl, 0, 0, 'WITHSCORES')
  reset_ms = (tonumber(oldest[2]) or now_ms) + limit_ms
  redis.call('PEXPIRE', rl, limit_ms)
end
local base = 'ss:u:' .. epoch .. ':' .. key_id
local buckets = {{'hour', ARGV[9], ARGV[10]}, {'day', ARGV[11], ARGV[12]}}
for _, b in ipairs(buckets) do
  local name = base .. ':' .. b[1] .. ':' .. b[2]
  if count_req > 0 then redis.call('HINCRBY', name, 'r', count_req) end
  if count_ref > 0 then redis.call('HINCRBY', name, 'f', count_ref) end
  redis.call('EXPIREAT', name, b[3])
  redis.call('SADD', 'ss:u:dirty', epoch .. '|' .. key_id .. '|' .. b[1] .. '|' .. b[2])
end
if ip_count > 0 and ip ~= '' then
  local ips, seen = base .. ':ip', base .. ':seen'
  redis.call('HSETNX', ips, '#', ARGV[13])
  redis.call('HINCRBY', ips, ip, ip_count)
  redis.call('ZADD', seen, ip_last, ip)
  local extra = redis.call('ZCARD', seen) - tonumber(ARGV[14])
  if extra > 0 then
    local old = redis.call('ZRANGE', seen, 0, extra - 1)
    redis.call('ZREM', seen, unpack(old))
    redis.call('HDEL', ips, unpack(old))
  end
  redis.call('EXPIRE', ips, ARGV[15])
  redis.call('EXPIRE', seen, ARGV[15])
  redis.call('SADD', 'ss:u:dirty', epoch .. '|' .. key_id .. '|ip|')
end
return {allowed, remaining, reset_ms, epoch, now_ms}
"""


@dataclass(frozen=True, slots=True)
class LimitState:
    """The key's rate-limit window after this request: what the X-RateLimit-* headers say."""

    allowed: bool
    limit: int
    remaining: int
    reset_ms: int  # Unix milliseconds when the oldest request leaves the window
    now_ms: int  # the window's clock when it was read

    @property
    def reset_at(self) -> int:
        return math.ceil(self.reset_ms / 1000)

    @property
    def retry_after(self) -> int:
        return max(1, math.ceil((self.reset_ms - self.now_ms) / 1000))

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(0, self.remaining)),
            "X-RateLimit-Reset": str(self.reset_at),
        }


def bucket_start(moment: datetime, granularity: str) -> datetime:
    moment = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return moment if granularity == "hour" else moment.replace(hour=0)


def bucket_end(start: datetime, granularity: str) -> datetime:
    return start + (timedelta(hours=1) if granularity == "hour" else timedelta(days=1))


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


@functools.cache
def _script(client: redis.Redis):
    return client.register_script(_SCRIPT)


def _args(
    key_id: str,
    *,
    ip: str | None,
    requests: int,
    refused: int,
    limit: tuple[int, int] | None,
    peek: bool,
    now: float,
    ip_count: int | None = None,
) -> list:
    """The script's arguments: the counts to add, at `now` (which picks the buckets)."""
    moment = datetime.fromtimestamp(now, tz=UTC)
    hour, day = bucket_start(moment, "hour"), bucket_start(moment, "day")
    limit_n, limit_s = limit or (0, 0)
    return [
        key_id,
        int(now * 1000),
        requests,
        refused,
        ip or "",
        limit_n,
        limit_s * 1000,
        f"{int(now * 1_000_000)}-{secrets.token_hex(4)}",
        int(hour.timestamp()),
        int(bucket_end(hour, "hour").timestamp()) + BUCKET_GRACE_SECONDS,
        int(day.timestamp()),
        int(bucket_end(day, "day").timestamp()) + BUCKET_GRACE_SECONDS,
        secrets.token_hex(16),
        RECENT_IPS_KEPT,
        IP_TTL_SECONDS,
        int(peek),
        requests if ip_count is None else ip_count,
        int(now * 1000),
    ]


def hit(
    key_id: str,
    *,
    ip: str | None,
    count_request: bool,
    refused: bool,
    limit: tuple[int, int] | None = None,
    peek: bool = False,
    now: float | None = None,
) -> LimitState | None:
    """Count one use of the key (and check its rate limit); None when Redis is unreachable.

    `limit` is (requests, per seconds). Without a limit the answer is an allowed state
    with limit 0. With `peek` the window is only read (a request refused before the
    rate-limit step still gets the X-RateLimit-* headers, and uses no budget).
    """
    now = time.time() if now is None else now
    limit_n = limit[0] if limit else 0
    args = _args(
        key_id,
        ip=ip,
        requests=int(count_request),
        refused=int(refused),
        limit=limit,
        peek=peek,
        now=now,
    )
    client = redis_client()
    try:
        if client is None:
            allowed, remaining, reset_ms, _epoch, now_ms = local_store().run(args)
        else:
            allowed, remaining, reset_ms, _epoch, now_ms = _script(client)(args=args)
    except redis.RedisError:
        logger.warning("usage store unavailable: key use not counted, rate limit not enforced")
        return None
    return LimitState(bool(allowed), limit_n, int(remaining), int(reset_ms), int(now_ms))


class LocalStore:
    """The script's semantics in this process's memory, for runs without Redis."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.epoch = secrets.token_hex(16)
        self.windows: dict[str, list[int]] = {}
        self.buckets: dict[tuple[str, str, str], dict[str, int]] = {}
        self.ips: dict[str, dict[str, tuple[int, int]]] = {}
        self.dirty: set[tuple[str, str, str]] = set()

    def run(self, args: list) -> tuple[int, int, int, str, int]:
        key_id, now_ms, count_req, count_ref, ip = args[0], args[1], args[2], args[3], args[4]
        limit_n, limit_ms, peek = args[5], args[6], args[15]
        allowed, remaining, reset_ms = 1, -1, 0
        with self.lock:
            if limit_n:
                window = [t for t in self.windows.get(key_id, []) if t > now_ms - limit_ms]
                if not peek and len(window) < limit_n:
                    window.append(now_ms)
                elif not peek:
                    allowed, count_ref = 0, 1
                self.windows[key_id] = window
                remaining = limit_n - len(window)
                reset_ms = (window[0] if window else now_ms) + limit_ms
            for granularity, start in (("hour", str(args[8])), ("day", str(args[10]))):
                bucket = self.buckets.setdefault((key_id, granularity, start), {"r": 0, "f": 0})
                bucket["r"] += count_req
                bucket["f"] += count_ref
                self.dirty.add((key_id, granularity, start))
            if args[16] and ip:
                seen = self.ips.setdefault(key_id, {})
                count, _last = seen.get(ip, (0, 0))
                seen[ip] = (count + args[16], args[17])
                for old in sorted(seen, key=lambda a: seen[a][1])[:-RECENT_IPS_KEPT]:
                    del seen[old]
                self.dirty.add((key_id, "ip", ""))
        return allowed, remaining, reset_ms, self.epoch, now_ms


@functools.cache
def local_store() -> LocalStore:
    return LocalStore()


class UsageBatch:
    """Key uses not yet sent to Redis, per process: a background thread sends them every
    USAGE_BATCH_SECONDS in one pipelined round trip, so counting adds no Redis round trip
    to a request (a rate-limited key still pays one, at its limit's step).

    Counts reach Redis (and so every process's usage answer) within that interval. A
    process that exits normally sends what it holds (atexit); one killed hard loses at
    most one interval's counts, as does one whose send finds Redis unreachable (logged).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        #: (key id, hour start) -> [requests, refused, last seen, {ip: [count, last seen]}]
        self.pending: dict[tuple[str, int], list] = {}
        self.pid = 0

    def add(self, key_id: str, ip: str | None, requests: int, refused: int) -> None:
        now = time.time()
        with self.lock:
            if self.pid != os.getpid():  # first use in this process (or a forked child)
                self.pid, self.pending = os.getpid(), {}
                threading.Thread(target=self._run, daemon=True, name="usage-batch").start()
            entry = self.pending.get((key_id, int(now // 3600)))
            if entry is None:
                entry = self.pending[key_id, int(now // 3600)] = [0, 0, now, {}]
            entry[0] += requests
            entry[1] += refused
            entry[2] = now
            if ip and requests:
                seen = entry[3].setdefault(ip, [0, now])
                seen[0] += requests
                seen[1] = now

    def _run(self) -> None:
        while True:
            time.sleep(settings.USAGE_BATCH_SECONDS)
            self.send()

    def send(self) -> None:
        with self.lock:
            pending, self.pending = self.pending, {}
        client = redis_client()
        if not pending or client is None:
            return
        pipe = client.pipeline(transaction=False)
        script = _script(client)
        for (key_id, _hour), (requests, refused, last, ips) in pending.items():
            common = {"limit": None, "peek": False}
            script(
                args=_args(key_id, ip=None, requests=requests, refused=refused, now=last, **common),
                client=pipe,
            )
            for ip, (count, seen_at) in ips.items():
                script(
                    args=_args(
                        key_id, ip=ip, requests=0, refused=0, now=seen_at, ip_count=count, **common
                    ),
                    client=pipe,
                )
        try:
            pipe.execute()
        except redis.RedisError:
            logger.warning("usage store unavailable: %d key counters not counted", len(pending))


_batch = UsageBatch()
atexit.register(_batch.send)


def count_use(key_id: str, ip: str | None, requests: int, refused: int) -> None:
    """Count a key's use without a rate limit: batched when Redis counts (USAGE_BATCH_SECONDS),
    at once otherwise (this process's memory, or a batch interval of 0)."""
    if settings.USAGE_BATCH_SECONDS and redis_client() is not None:
        _batch.add(key_id, ip, requests, refused)
    else:
        hit(key_id, ip=ip, count_request=bool(requests), refused=bool(refused))


def decision_key(request):
    """The key a request was accepted or refused with (after its lookup), or None."""
    decision = request.META.get(AUTH_DECISION)
    return None if decision is None else decision.key


class KeyRateLimit(BaseThrottle):
    """DRF throttle: a key's own rate limit, at its place in SPEC §4.10's order.

    DRF runs throttles after authentication and `check_permissions`, where a
    project-scoped view resolves and checks the project, and before the view's
    permission check. The same round trip counts the request.
    """

    state: LimitState | None = None

    def allow_request(self, request, view) -> bool:
        key = decision_key(request)
        if key is None or key.rate_limit_requests is None:
            return True
        state = hit(
            str(key.id),
            ip=client_ip(request),
            count_request=True,
            refused=False,
            limit=(key.rate_limit_requests, key.rate_limit_seconds),
        )
        request.META[COUNTED] = True
        if state is None:
            return True
        request.META[RATE_LIMIT] = self.state = state
        return state.allowed

    def wait(self) -> float | None:
        return None if self.state is None else self.state.retry_after


def record_use_counts(request, refused: bool) -> None:
    """After the response: count the request on its key, unless the rate limit did already
    (then only a refusal that came after it is added). A rate-limited key refused before
    the limit's step reads its window without using it, for the X-RateLimit-* headers."""
    key = decision_key(request)
    if key is None:
        return
    if request.META.get(COUNTED):
        state = request.META.get(RATE_LIMIT)
        # Nothing to add unless refused after an allowed limit check; no second try either
        # when that check found Redis unreachable (a request waits 250 ms at most).
        if not refused or state is None or not state.allowed:
            return
        count_use(str(key.id), None, requests=0, refused=1)
        return
    if key.rate_limit_requests is None:
        count_use(str(key.id), client_ip(request), requests=1, refused=int(refused))
        return
    limit = (key.rate_limit_requests, key.rate_limit_seconds)
    state = hit(
        str(key.id),
        ip=client_ip(request),
        count_request=True,
        refused=refused,
        limit=limit,
        peek=True,
    )
    if state is not None:
        request.META[RATE_LIMIT] = state
