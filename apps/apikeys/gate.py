"""Per-key usage counting and rate limits in Redis (SPEC §4.9, §4.10).

Two Lua scripts, each atomic:

* **Rate limit** (keys with `rateLimit`, one round trip per request, overlapping the
  key's lookup: `reserve_limit`): a sliding-window log (a list of the accepted
  requests' times in ms, oldest first, `ss:rlog:<key id>`), so "at most n in any
  s-second window" holds at the window's edges too, across every process, on Redis's
  clock. A refused request is not logged, so it consumes no budget. A list, not a
  sorted set: the times arrive in order, and a list holds one in ~10 bytes where a
  sorted set of more than 128 takes ~115 (`MEMORY USAGE`), so a key at 100,000 a day
  holds 1 MB, not 11. Beside it `ss:rlog:<key id>:kept`, the window last set from the
  key's row, which a check made on a guess (`reserve_limit`) never trims below.
* **Counting** (every request that presented a known key, rate-limited or not;
  batched per process, `UsageBatch`, so no round trip on the request), per key:

  - cumulative `r` (requests) and `f` (refused) fields in its UTC hour and day hashes,
    which expire a few minutes after their period ends (they are copied to the database
    at least once a minute, `apps.apikeys.usage`);
  - per client IP a count (hash `:ip`) and a last-seen time (sorted set `:seen`) for the
    `RECENT_IPS_KEPT` most recent IPs; one pushed out of those keeps its count until the
    next copy has stored it (sorted set `:gone`, at most `EVICTED_IPS_KEPT`, the oldest
    dropped beyond that), so one that comes back in between counts on; IPs expire after
    two idle days;
  - field `#n` of `:ip` counts the changes to the key's IPs, so a copy can tell whether
    they moved since it read them.

  Counters are cumulative within an *epoch* (one Redis lifetime, `ss:u:epoch`), so the
  copy can keep the largest value seen and never count twice. A Redis that comes back
  from a snapshot, or a replica promoted in its place, holds counters older than what
  was copied: the epoch is tied to the server's `run_id` (`ss:u:run`), so a new server
  lifetime starts a new epoch (each batch checks it first, `_EPOCH_SCRIPT`); the one
  before stays readable (`ss:u:prev`) until its counters expire, so the usage answer
  keeps what waits for a copy there. An IP's
  count can start again within an epoch (expired for a key used weekly, or back after
  its count was stored and forgotten), so each IP carries its own epoch (field
  `e:<ip>`), set when it enters.

Without `REDIS_URL` the same operations run in the process's memory: limits and
counts are then per process (the SQLite demo). When Redis cannot be reached in
250 ms the request goes on: no limit is enforced and that request's counts are
lost, with a warning in the log and `sigsentry_redis_fail_open_total` counting it
(fail open: a valid key is never refused because Redis is down).
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
from typing import TYPE_CHECKING

import redis
from django.conf import settings
from django.core.signals import setting_changed
from rest_framework.throttling import BaseThrottle

from core import failopen
from core.net import client_ip, client_refusal
from core.principal import AUTH_DECISION

if TYPE_CHECKING:
    from apps.apikeys.selectors import KeyRecord

logger = logging.getLogger("sigsentry.usage")

#: The `request.META` keys: the rate-limit state (for the X-RateLimit-* headers) and
#: whether this request's limit was checked (Redis answering or not).
RATE_LIMIT = "sigsentry.rate_limit"
LIMIT_CHECKED = "sigsentry.limit_checked"

RECENT_IPS_KEPT = 10
#: Per key, IPs pushed out of the kept ones whose counts wait for a copy (the oldest
#: dropped beyond it): 10 + 50 IPs stay within Redis's compact 128-field hash encoding.
EVICTED_IPS_KEPT = 50
BUCKET_GRACE_SECONDS = 300
IP_TTL_SECONDS = 2 * 86400
REDIS_TIMEOUT_SECONDS = 0.25

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

_EPOCH_SCRIPT = """
local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
if redis.call('GET', 'ss:u:run') ~= run or redis.call('EXISTS', 'ss:u:epoch') == 0 then
  local old = redis.call('GET', 'ss:u:epoch')
  if old then  -- its counters may wait for a copy: the usage answer reads them too
    redis.call('SET', 'ss:u:prev', old, 'EX', ARGV[2])
  end
  redis.call('SET', 'ss:u:epoch', ARGV[1])
  redis.call('SET', 'ss:u:run', run)
end
return redis.call('GET', 'ss:u:epoch')
"""
#: The previous epoch is read until its last counters have expired (a day's bucket + grace).
PREVIOUS_EPOCH_SECONDS = 86_400 + 3_600 + BUCKET_GRACE_SECONDS

_COUNT_SCRIPT = """
local key_id = ARGV[1]
local count_req, count_ref, ip = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local ip_count, ip_last = tonumber(ARGV[12]), tonumber(ARGV[13])
redis.call('SET', 'ss:u:epoch', ARGV[9], 'NX')
local epoch = redis.call('GET', 'ss:u:epoch')
local base = 'ss:u:' .. epoch .. ':' .. key_id
if count_req > 0 or count_ref > 0 then
  local buckets = {{'hour', ARGV[5], ARGV[6]}, {'day', ARGV[7], ARGV[8]}}
  for _, b in ipairs(buckets) do
    local name = base .. ':' .. b[1] .. ':' .. b[2]
    if count_req > 0 then redis.call('HINCRBY', name, 'r', count_req) end
    if count_ref > 0 then redis.call('HINCRBY', name, 'f', count_ref) end
    redis.call('EXPIREAT', name, b[3])
    redis.call('SADD', 'ss:u:dirty', epoch .. '|' .. key_id .. '|' .. b[1] .. '|' .. b[2])
  end
end
if ip_count > 0 and ip ~= '' then
  local ips, seen, gone = base .. ':ip', base .. ':seen', base .. ':gone'
  if redis.call('HEXISTS', ips, ip) == 0 then
    redis.call('HSET', ips, 'e:' .. ip, string.sub(ARGV[9], 1, 16))
  end
  redis.call('HINCRBY', ips, ip, ip_count)
  redis.call('HINCRBY', ips, '#n', 1)
  if redis.call('ZADD', seen, ip_last, ip) == 1 then
    redis.call('ZREM', gone, ip)
  end
  local extra = redis.call('ZCARD', seen) - tonumber(ARGV[10])
  if extra > 0 then
    local old = redis.call('ZRANGE', seen, 0, extra - 1, 'WITHSCORES')
    for i = 1, #old, 2 do
      redis.call('ZREM', seen, old[i])
      redis.call('ZADD', gone, old[i + 1], old[i])
    end
    local over = redis.call('ZCARD', gone) - tonumber(ARGV[14])
    if over > 0 then
      for _, lost in ipairs(redis.call('ZRANGE', gone, 0, over - 1)) do
        redis.call('ZREM', gone, lost)
        redis.call('HDEL', ips, lost, 'e:' .. lost)
      end
    end
  end
  redis.call('EXPIRE', ips, ARGV[11])
  redis.call('EXPIRE', seen, ARGV[11])
  redis.call('EXPIRE', gone, ARGV[11])
  redis.call('SADD', 'ss:u:dirty', epoch .. '|' .. key_id .. '|ip|')
end
return epoch
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
def _scripts(client: redis.Redis):
    return (
        client.register_script(_LIMIT_SCRIPT),
        client.register_script(_COUNT_SCRIPT),
        client.register_script(_EPOCH_SCRIPT),
    )


def _fail_open(what: str) -> None:
    logger.warning("usage store unavailable: %s", what)
    failopen.gave_up("key_usage")


def _count_args(
    key_id: str, *, ip: str | None, requests: int, refused: int, now: float, ip_count: int
) -> list:
    """The counting script's arguments: the counts to add, at `now` (which picks the buckets)."""
    moment = datetime.fromtimestamp(now, tz=UTC)
    hour, day = bucket_start(moment, "hour"), bucket_start(moment, "day")
    return [  # _COUNT_SCRIPT's ARGV[1] to ARGV[14], in order (LocalStore.count reads them too)
        key_id,  # 1
        requests,  # 2
        refused,  # 3
        ip or "",  # 4
        int(hour.timestamp()),  # 5: the hour bucket
        int(bucket_end(hour, "hour").timestamp()) + BUCKET_GRACE_SECONDS,  # 6: its expiry
        int(day.timestamp()),  # 7: the day bucket
        int(bucket_end(day, "day").timestamp()) + BUCKET_GRACE_SECONDS,  # 8: its expiry
        secrets.token_hex(16),  # 9: the epoch, should this Redis have none yet
        RECENT_IPS_KEPT,  # 10
        IP_TTL_SECONDS,  # 11
        ip_count,  # 12: requests from `ip` (0: no IP to count)
        int(now * 1000),  # 13: when `ip` was last seen
        EVICTED_IPS_KEPT,  # 14
    ]


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
            reply = _scripts(client)[0](
                keys=_window_keys(key_id),
                args=_limit_args(limit, peek=peek, give_back=give_back, guess=guess),
            )
        except redis.RedisError:
            _fail_open("rate limit not enforced, key use not counted")
            return None
    return _limit_state(limit_n, reply)


def _limit_args(limit: tuple[int, int], *, peek: bool, give_back: int, guess: bool) -> list:
    """The window script's ARGV[1] to ARGV[5], in order."""
    limit_n, limit_s = limit
    return [limit_n, limit_s * 1000, int(peek), give_back, int(guess)]


def _window_keys(key_id: str) -> list[str]:
    """The key's window: its log, and the window it keeps (see the script)."""
    return [f"ss:rlog:{key_id}", f"ss:rlog:{key_id}:kept"]


def _limit_state(limit_n: int, reply: list) -> LimitState:
    allowed, remaining, reset_ms, now_ms, _taken = reply
    return LimitState(bool(allowed), limit_n, int(remaining), int(reset_ms), int(now_ms))


# ------------------------------------------------------------ the overlapped check
#
# The check is sent before the key's lookup and read after it, so the two round trips
# overlap (bench/README.md: +342 µs -> +93-160). Its key and limit are those this process
# last read for the credential: a guess, held against the row before use, and given back
# (`give_back`) when the request never reaches the limit's step. A request the guess
# says will be refused before that step (by the key's origins or IPs, its projects, or a
# view no key may use) reserves nothing: a stolen key cannot hold its owner's budget, and
# the refusal costs one round trip (the window read for its headers), not two. Two remain
# only where the guess cannot know: a key changed since, an org key naming a project that
# is not its organization's (a query tells).

#: credential digest -> the record this process last read of an active rate-limited key
_limits_seen: dict[str, KeyRecord] = {}
_limits_seen_lock = threading.Lock()
LIMITS_SEEN_KEPT = 10_000
RESERVATION = "sigsentry.rate_limit_reservation"


@dataclass(slots=True)
class Reservation:
    """A rate-limit check sent before the key's lookup (see above)."""

    key_id: str
    limit: tuple[int, int]
    pool: redis.ConnectionPool
    connection: redis.connection.Connection | None
    state: LimitState | None = None  # Redis's answer, once read
    taken_ms: int = 0  # the time it added to the key's window (0: none)
    settled: bool = False  # used at the limit's step, or given back

    def answers(self, key) -> bool:
        """Whether Redis's answer is this key's check with the key's current limit."""
        return (
            self.state is not None and self.key_id == str(key.id) and self.limit == key_limit(key)
        )


def _active(key: KeyRecord) -> bool:
    return key.revoked_at is None and (key.expires_at is None or key.expires_at > datetime.now(UTC))


def remember_limit(digest: str, key: KeyRecord | None) -> None:
    """After the lookup (`key` None when there is no such key): the guess for the
    credential's next request on this process. Only active rate-limited keys are guessed."""
    limit = key_limit(key)
    if limit is None and digest not in _limits_seen:
        return  # the common case, without the lock
    with _limits_seen_lock:
        if limit is None or not _active(key):
            _limits_seen.pop(digest, None)
            return
        if digest not in _limits_seen and len(_limits_seen) >= LIMITS_SEEN_KEPT:
            del _limits_seen[next(iter(_limits_seen))]  # the oldest guess
        _limits_seen[digest] = key


def _refused_early(request, guess: KeyRecord) -> bool:
    """Whether the guess says this request stops before the limit's step (SPEC §4.10's
    order: expired, origin, IP, project; and views no key may use)."""
    if not _active(guess):
        return True
    if client_refusal(request, guess.allowed_origins, guess.allowed_ips) is not None:
        return True
    view = (getattr(request, "parser_context", None) or {}).get("view")
    refuses = getattr(view, "refuses_key_early", None)  # core.api.ApiView's
    return refuses is not None and refuses(guess)


def reserve_limit(request, digest: str) -> None:
    """Before the lookup: send the rate-limit check of the key this credential named last
    time (a guess), to be read by `collect_reservation` after the lookup."""
    guess = _limits_seen.get(digest)
    client = redis_client()
    if guess is None or client is None or failopen.given_up() or _refused_early(request, guess):
        return
    pool = client.connection_pool
    try:
        connection = pool.get_connection()
    except redis.RedisError:
        _fail_open("rate limit not enforced, key use not counted")
        return
    key_id, limit = str(guess.id), key_limit(guess)
    try:
        connection.send_command(
            "EVALSHA",
            _scripts(client)[0].sha,
            2,
            *_window_keys(key_id),
            *_limit_args(limit, peek=False, give_back=0, guess=True),
        )
    except BaseException as exc:
        pool.release(connection)  # disconnected by redis-py: nothing left unread
        if not isinstance(exc, redis.RedisError):
            raise
        _fail_open("rate limit not enforced, key use not counted")
        return
    request.META[RESERVATION] = Reservation(key_id, limit, pool, connection)


def collect_reservation(request) -> None:
    """After the lookup (even a failed one): read Redis's answer to `reserve_limit`."""
    reservation = request.META.get(RESERVATION)
    if reservation is None or reservation.connection is None:
        return
    connection, reservation.connection = reservation.connection, None
    try:
        reply = connection.read_response()
    except redis.exceptions.NoScriptError:
        return  # a Redis without the script (restarted): the limit's step loads it
    except redis.RedisError:
        _fail_open("rate limit not enforced, key use not counted")
        return
    except BaseException:
        connection.disconnect()  # its answer unread: never handed to another command
        raise
    finally:
        reservation.pool.release(connection)
    reservation.state = _limit_state(reservation.limit[0], reply)
    reservation.taken_ms = int(reply[4])


def _give_back(reservation: Reservation, limit: tuple[int, int] | None = None) -> LimitState | None:
    """Return the time `reservation` took to its key's window, answering the window under
    `limit` (the row's; None: read under the guess). When Redis already failed this
    request, this process's next batch sends it instead, so the request does not wait."""
    if failopen.given_up():
        _batch.give_back(reservation.key_id, reservation.limit, reservation.taken_ms)
        return None
    return check_limit(
        reservation.key_id,
        limit or reservation.limit,
        peek=True,
        give_back=reservation.taken_ms,
        guess=limit is None,
    )


def _settle(request) -> Reservation | None:
    """The request's reservation, now settled, or None when there is none left to settle."""
    reservation = request.META.get(RESERVATION)
    if reservation is None or reservation.settled:
        return None
    reservation.settled = True
    return reservation


def _counting_pipeline(client: redis.Redis):
    """A pipeline that checks the epoch first (a new server lifetime: a new epoch, the one
    before kept readable), and the counting script to queue on it."""
    _limit, count, epoch = _scripts(client)
    pipe = client.pipeline(transaction=False)
    epoch(args=[secrets.token_hex(16), PREVIOUS_EPOCH_SECONDS], client=pipe)
    return pipe, count


def add_counts(key_id: str, *, ip: str | None, requests: int, refused: int) -> None:
    """Add one use to the key's counters at once (one round trip to Redis, or this process)."""
    args = _count_args(
        key_id, ip=ip, requests=requests, refused=refused, now=time.time(), ip_count=requests
    )
    client = redis_client()
    if client is None:
        local_store().count(args)
        return
    if failopen.given_up():
        return  # Redis did not answer earlier in this request: this use is not counted
    pipe, count = _counting_pipeline(client)
    count(args=args, client=pipe)
    try:
        pipe.execute()
    except redis.RedisError:
        _fail_open("key use not counted")


class LocalStore:
    """The scripts' semantics in this process's memory, for runs without Redis."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.epoch = secrets.token_hex(16)
        self.windows: dict[str, list[int]] = {}
        self.buckets: dict[tuple[str, str, str], dict[str, int]] = {}
        #: key id -> {ip: (requests, last seen in ms, the IP's epoch)}: the kept IPs, and
        #: those pushed out of them whose counts wait for the copy
        self.ips: dict[str, dict[str, tuple[int, int, str]]] = {}
        self.gone: dict[str, dict[str, tuple[int, int, str]]] = {}
        self.dirty: set[tuple[str, str, str]] = set()

    def limit(
        self, key_id: str, limit_n: int, limit_ms: int, peek: bool, now_ms: int, give_back: int = 0
    ) -> tuple[int, int, int, int, int]:
        allowed, taken = 1, 0
        with self.lock:
            window = self.windows.get(key_id, [])
            if give_back in window:
                window.reverse()
                window.remove(give_back)  # the newest such time, as LREM -1 does
                window.reverse()
            window = [t for t in window if t > now_ms - limit_ms]
            if not peek and len(window) < limit_n:
                taken = max(now_ms, window[-1] if window else 0)
                window.append(taken)
            elif not peek:
                allowed = 0
            self.windows[key_id] = window
            reset_ms = (window[0] if window else now_ms) + limit_ms
        return allowed, limit_n - len(window), reset_ms, now_ms, taken

    def count(self, args: list) -> None:
        key_id, count_req, count_ref, ip = args[0], args[1], args[2], args[3]
        ip_count, ip_last = args[11], args[12]
        with self.lock:
            if count_req or count_ref:
                for granularity, start in (("hour", str(args[4])), ("day", str(args[6]))):
                    bucket = self.buckets.setdefault((key_id, granularity, start), {"r": 0, "f": 0})
                    bucket["r"] += count_req
                    bucket["f"] += count_ref
                    self.dirty.add((key_id, granularity, start))
            if ip_count and ip:
                seen = self.ips.setdefault(key_id, {})
                entry = seen.get(ip) or self.gone.get(key_id, {}).pop(ip, None)
                count, _last, ip_epoch = entry or (0, 0, secrets.token_hex(8))
                seen[ip] = (count + ip_count, ip_last, ip_epoch)
                for old in sorted(seen, key=lambda a: seen[a][1])[:-RECENT_IPS_KEPT]:
                    gone = self.gone.setdefault(key_id, {})
                    gone[old] = seen.pop(old)
                    while len(gone) > EVICTED_IPS_KEPT:
                        del gone[min(gone, key=lambda a: gone[a][1])]
                self.dirty.add((key_id, "ip", ""))


@functools.cache
def local_store() -> LocalStore:
    return LocalStore()


class UsageBatch:
    """Key uses not yet sent to Redis, per process: a background thread sends them every
    USAGE_BATCH_SECONDS in one pipelined round trip, so counting adds no Redis round trip
    to a request (a rate-limited key pays one, at its limit's step, for the window only).

    Counts reach Redis (and so every process's usage answer) within that interval. A
    process that exits normally sends what it holds (atexit); one killed hard loses at
    most one interval's counts, as does one whose send finds Redis unreachable (logged).
    The times reservations took, when their request could not wait for Redis to give
    them back, go with the same send.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        #: (key id, hour start) -> [requests, refused, last seen, {ip: [count, last seen]}]
        self.pending: dict[tuple[str, int], list] = {}
        #: (key id, the guessed limit, the time taken) of reservations to give back
        self.give_backs: list[tuple[str, tuple[int, int], int]] = []
        self.pid = 0

    def _start(self) -> None:
        """Under the lock: the sending thread, on first use in this process (or a fork)."""
        if self.pid != os.getpid():
            self.pid, self.pending, self.give_backs = os.getpid(), {}, []
            threading.Thread(target=self._run, daemon=True, name="usage-batch").start()

    def give_back(self, key_id: str, limit: tuple[int, int], taken_ms: int) -> None:
        with self.lock:
            self._start()
            self.give_backs.append((key_id, limit, taken_ms))

    def add(self, key_id: str, ip: str | None, requests: int, refused: int) -> None:
        now = time.time()
        with self.lock:
            self._start()
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
            time.sleep(settings.USAGE_BATCH_SECONDS or 1)  # 0: only give-backs come here
            self.send()

    def send(self) -> None:
        with self.lock:
            pending, self.pending = self.pending, {}
            give_backs, self.give_backs = self.give_backs, []
        client = redis_client()
        if not (pending or give_backs) or client is None:
            return
        pipe, script = _counting_pipeline(client)
        for key_id, limit, taken_ms in give_backs:
            _scripts(client)[0](
                keys=_window_keys(key_id),
                args=_limit_args(limit, peek=True, give_back=taken_ms, guess=True),
                client=pipe,
            )
        for (key_id, _hour), (requests, refused, last, ips) in pending.items():
            args = _count_args(
                key_id, ip=None, requests=requests, refused=refused, now=last, ip_count=0
            )
            script(args=args, client=pipe)
            for ip, (count, seen_at) in ips.items():
                args = _count_args(
                    key_id, ip=ip, requests=0, refused=0, now=seen_at, ip_count=count
                )
                script(args=args, client=pipe)
        try:
            pipe.execute()
        except redis.RedisError:
            _fail_open(
                f"{len(pending)} key counters not counted, {len(give_backs)} rate-limit "
                "reservations not given back"
            )


_batch = UsageBatch()
atexit.register(_batch.send)


def send_pending_counts() -> None:
    """Send this process's batch now (the copy to the database does, before it reads)."""
    _batch.send()


def count_use(key_id: str, ip: str | None, requests: int, refused: int) -> None:
    """Count a key's use: batched when Redis counts (USAGE_BATCH_SECONDS), at once otherwise
    (this process's memory, or a batch interval of 0)."""
    if settings.USAGE_BATCH_SECONDS and redis_client() is not None:
        _batch.add(key_id, ip, requests, refused)
    else:
        add_counts(key_id, ip=ip, requests=requests, refused=refused)


def decision_key(request):
    """The key a request was accepted or refused with (after its lookup), or None."""
    decision = request.META.get(AUTH_DECISION)
    return None if decision is None else decision.key


def key_limit(key) -> tuple[int, int] | None:
    if key is None or key.rate_limit_requests is None:
        return None
    return key.rate_limit_requests, key.rate_limit_seconds


class KeyRateLimit(BaseThrottle):
    """DRF throttle: a key's own rate limit, at its place in SPEC §4.10's order.

    DRF runs throttles after authentication and `check_permissions`, where a
    project-scoped view resolves and checks the project, and before the view's
    permission check. The request is counted after the response, like any other.
    """

    state: LimitState | None = None

    def allow_request(self, request, view) -> bool:
        key = decision_key(request)
        limit = key_limit(key)
        if limit is None:
            return True
        reservation = _settle(request)
        if reservation is not None and reservation.answers(key):
            state = reservation.state  # checked while the key was looked up
        else:  # no guess, or a limit changed since: checked now, what the guess took given back
            taken = reservation.taken_ms if reservation is not None else 0
            if taken and (failopen.given_up() or reservation.key_id != str(key.id)):
                _give_back(reservation)  # with the next batch, or to the window it came from
                taken = 0
            state = check_limit(str(key.id), limit, give_back=taken)
        request.META[LIMIT_CHECKED] = True
        if state is None:
            return True
        request.META[RATE_LIMIT] = self.state = state
        return state.allowed

    def wait(self) -> float | None:
        return None if self.state is None else self.state.retry_after


def record_use_counts(request, refused: bool) -> None:
    """After the response: count the request on its key. A rate-limited key refused before
    the limit's step reads its window without using it, for the X-RateLimit-* headers,
    giving back what a reservation took."""
    key = decision_key(request)
    limit = key_limit(key)
    reservation = _settle(request)
    if reservation is not None and reservation.taken_ms:
        same = key is not None and reservation.key_id == str(key.id) and limit is not None
        state = _give_back(reservation, limit if same else None)
        if same and state is not None:
            request.META[RATE_LIMIT] = state
    elif reservation is not None and key is not None and reservation.answers(key):
        request.META[RATE_LIMIT] = reservation.state  # nothing taken: the window as it is
    if key is None:
        return
    if request.META.get(LIMIT_CHECKED) or RATE_LIMIT in request.META:
        if request.META.get(RATE_LIMIT) is None:
            return  # Redis unreachable at the limit's step: no second wait in this request
    elif limit is not None:
        state = check_limit(str(key.id), limit, peek=True)
        if state is None:
            return
        request.META[RATE_LIMIT] = state
    count_use(str(key.id), client_ip(request), requests=1, refused=int(refused))
