"""A key's rate limit (SPEC §4.10): at most n requests in any s-second window.

One atomic Lua script, one round trip per request: a sliding-window log (a list of the
accepted requests' times in ms, oldest first, `ss:rlog:<key id>`), so "at most n in
any s-second window" holds at the window's edges too, across every process, on Redis's
clock. A refused request is not logged, so it consumes no budget. A list, not a sorted
set: the times arrive in order, and a list holds one in ~10 bytes where a sorted set of
more than 128 takes ~115 (`MEMORY USAGE`), so a key at 100,000 a day holds 1 MB, not
11. The check runs at the limit's step, with the limit the key's row says (read by this
request's lookup), so a changed limit applies to the next request on every process.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass

import redis

from apps.apikeys.gate.store import fail_open, local_store
from core import failopen
from core.sharedredis import redis_client

_LIMIT_SCRIPT = """
local limit_n, limit_ms, peek = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3] == '1'
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local log = KEYS[1]
local len = redis.call('LLEN', log)
-- times in order: drop those out of the window (gallop from the oldest, then bisect:
-- O(log k) reads for k of them)
local cutoff, gone = now_ms - limit_ms, 0
if len > 0 and tonumber(redis.call('LINDEX', log, 0)) <= cutoff then
  local live = 1
  while live < len and tonumber(redis.call('LINDEX', log, live)) <= cutoff do
    gone, live = live, math.min(live * 2, len)
  end
  while live - gone > 1 do
    local mid = math.floor((gone + live) / 2)
    if tonumber(redis.call('LINDEX', log, mid)) <= cutoff then gone = mid else live = mid end
  end
  gone = live
  redis.call('LTRIM', log, gone, -1)
  len = len - gone
end
local allowed = 1
if peek then
  -- refused before the limit's step: the window as it is, no budget used
elseif len < limit_n then
  -- never before the newest time kept, so the log stays in order should the clock step back
  redis.call('RPUSH', log, math.max(now_ms, tonumber(redis.call('LINDEX', log, -1)) or 0))
  len = len + 1
else
  allowed = 0
end
-- when a place frees: the oldest time leaves, or, with more times than a lowered limit
-- admits, the one whose leaving brings the log under it
local reset_ms = (tonumber(redis.call('LINDEX', log, math.max(0, len - limit_n))) or now_ms)
  + limit_ms
redis.call('PEXPIRE', log, limit_ms)
return {allowed, limit_n - len, reset_ms, now_ms}
"""


@dataclass(frozen=True, slots=True)
class LimitState:
    """The key's rate-limit window after this request: what the X-RateLimit-* headers say."""

    allowed: bool
    limit: int
    remaining: int
    reset_ms: int  # Unix milliseconds when a place frees (the script says which time)
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


@functools.cache
def limit_script(client: redis.Redis):
    return client.register_script(_LIMIT_SCRIPT)


def key_limit(key) -> tuple[int, int] | None:
    if key is None or key.rate_limit_requests is None:
        return None
    return key.rate_limit_requests, key.rate_limit_seconds


def check_limit(key_id: str, limit: tuple[int, int], *, peek: bool = False) -> LimitState | None:
    """Use one request of the key's window of `limit` (requests, per seconds), or with `peek`
    only read it (a request refused before the limit's step uses no budget). One round
    trip; None when Redis is unreachable (the limit is then not enforced)."""
    limit_n, limit_s = limit
    client = redis_client()
    if client is None:
        reply = local_store().limit(key_id, limit_n, limit_s * 1000, peek, int(time.time() * 1000))
    elif failopen.given_up():
        return None  # Redis did not answer earlier in this request: not waited for again
    else:
        try:
            reply = limit_script(client)(keys=window_keys(key_id), args=limit_args(limit, peek))
        except redis.RedisError:
            fail_open("rate limit not enforced, key use not counted")
            return None
    return limit_state(limit_n, reply)


def limit_args(limit: tuple[int, int], peek: bool) -> list:
    """The window script's ARGV, in order."""
    limit_n, limit_s = limit
    return [limit_n, limit_s * 1000, int(peek)]


def window_keys(key_id: str) -> list[str]:
    """The key's window: the log of its admitted requests' times."""
    return [f"ss:rlog:{key_id}"]


def limit_state(limit_n: int, reply: list) -> LimitState:
    allowed, remaining, reset_ms, now_ms = reply
    return LimitState(bool(allowed), limit_n, int(remaining), int(reset_ms), int(now_ms))
