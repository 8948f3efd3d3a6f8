"""A key's rate limit (SPEC §4.10): at most n requests in any s-second window.

One atomic Lua script, one round trip per request: a sliding-window log (a list of the
accepted requests' times in ms, oldest first, `ss:rlog:<key id>`), so "at most n in
any s-second window" holds at the window's edges too, across every process, on Redis's
clock. A refused request is not logged, so it consumes no budget. A list, not a sorted
set: the times arrive in order, and a list holds one in ~10 bytes where a sorted set of
more than 128 takes ~115 (`MEMORY USAGE`), so a key at 100,000 a day holds 1 MB, not
11. Beside it `ss:rlog:<key id>:kept`, the window last set from the key's row, which a
check made on a guess (`reservation`) never trims below.
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
local guess = ARGV[5] == '1'
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local log, kept = KEYS[1], KEYS[2]
if ARGV[4] ~= '0' then
  -- a time this script added for a request that never reached the limit's step: given back
  redis.call('LREM', log, -1, ARGV[4])
end
-- The window the log keeps: the key's limit as its row says. A guess (a limit a process
-- read earlier, maybe changed since) keeps at least the one last set from a row, so a
-- stale guess never drops times a longer window still counts.
local keep_ms = limit_ms
if guess then keep_ms = math.max(limit_ms, tonumber(redis.call('GET', kept)) or 0) end
local function first_after(cutoff, len)
  -- times in order: the first one after `cutoff` (gallop from the oldest, then bisect:
  -- O(log k) reads for k before it)
  if len == 0 or tonumber(redis.call('LINDEX', log, 0)) > cutoff then return 0 end
  local gone, live = 0, 1
  while live < len and tonumber(redis.call('LINDEX', log, live)) <= cutoff do
    gone, live = live, math.min(live * 2, len)
  end
  while live - gone > 1 do
    local mid = math.floor((gone + live) / 2)
    if tonumber(redis.call('LINDEX', log, mid)) <= cutoff then gone = mid else live = mid end
  end
  return live
end
local len = redis.call('LLEN', log)
local gone = first_after(now_ms - keep_ms, len)
if gone > 0 then
  redis.call('LTRIM', log, gone, -1)
  len = len - gone
end
local first = keep_ms > limit_ms and first_after(now_ms - limit_ms, len) or 0
local used = len - first
local allowed, taken = 1, 0
if peek then
  -- refused before the limit's step: the window as it is, no budget used
elseif used < limit_n then
  -- never before the newest time kept, so the log stays in order should the clock step back
  taken = math.max(now_ms, tonumber(redis.call('LINDEX', log, -1)) or 0)
  redis.call('RPUSH', log, taken)
  used = used + 1
else
  allowed = 0
end
local reset_ms = (tonumber(redis.call('LINDEX', log, first)) or now_ms) + limit_ms
if not guess then
  redis.call('PEXPIRE', log, limit_ms)
  redis.call('SET', kept, limit_ms, 'PX', limit_ms)
else
  for _, name in ipairs({log, kept}) do  -- a guess only ever lengthens what is kept
    local ttl = redis.call('PTTL', name)
    if ttl ~= -2 and ttl < keep_ms then redis.call('PEXPIRE', name, keep_ms) end
  end
end
return {allowed, limit_n - used, reset_ms, now_ms, taken}
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


@functools.cache
def limit_script(client: redis.Redis):
    return client.register_script(_LIMIT_SCRIPT)


def key_limit(key) -> tuple[int, int] | None:
    if key is None or key.rate_limit_requests is None:
        return None
    return key.rate_limit_requests, key.rate_limit_seconds


def check_limit(
    key_id: str,
    limit: tuple[int, int],
    *,
    peek: bool = False,
    give_back: int = 0,
    guess: bool = False,
) -> LimitState | None:
    """Use one request of the key's window of `limit` (requests, per seconds), or with `peek`
    only read it (a request refused before the limit's step uses no budget); `give_back`
    first returns a time a `Reservation` took. `guess`: `limit` may not be the row's (see
    the script). One round trip; None when Redis is unreachable (the limit is then not
    enforced)."""
    limit_n, limit_s = limit
    client = redis_client()
    if client is None:
        reply = local_store().limit(
            key_id, limit_n, limit_s * 1000, peek, int(time.time() * 1000), give_back
        )
    elif failopen.given_up():
        return None  # Redis did not answer earlier in this request: not waited for again
    else:
        try:
            reply = limit_script(client)(
                keys=window_keys(key_id),
                args=limit_args(limit, peek=peek, give_back=give_back, guess=guess),
            )
        except redis.RedisError:
            fail_open("rate limit not enforced, key use not counted")
            return None
    return limit_state(limit_n, reply)


def limit_args(limit: tuple[int, int], *, peek: bool, give_back: int, guess: bool) -> list:
    """The window script's ARGV[1] to ARGV[5], in order."""
    limit_n, limit_s = limit
    return [limit_n, limit_s * 1000, int(peek), give_back, int(guess)]


def window_keys(key_id: str) -> list[str]:
    """The key's window: its log, and the window it keeps (see the script)."""
    return [f"ss:rlog:{key_id}", f"ss:rlog:{key_id}:kept"]


def limit_state(limit_n: int, reply: list) -> LimitState:
    allowed, remaining, reset_ms, now_ms, _taken = reply
    return LimitState(bool(allowed), limit_n, int(remaining), int(reset_ms), int(now_ms))
