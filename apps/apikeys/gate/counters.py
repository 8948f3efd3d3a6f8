"""A key's usage counters (SPEC §4.9) in Redis, one atomic Lua script per count.

Every request that presented a known key counts, rate-limited or not (batched per
process, `batch`, so no round trip on the request). Per key:

* cumulative `r` (requests) and `f` (refused) fields in its UTC hour and day hashes,
  which expire a few minutes after their period ends (they are copied to the database
  at least once a minute, `apps.apikeys.usage.flush`);
* per client IP a count (hash `:ip`) and a last-seen time (sorted set `:seen`) for the
  `RECENT_IPS_KEPT` most recent IPs; one pushed out of those keeps its count until the
  next copy has stored it (sorted set `:gone`, at most `EVICTED_IPS_KEPT`, the oldest
  dropped beyond that), so one that comes back in between counts on; IPs expire after
  two idle days;
* field `#n` of `:ip` counts the changes to the key's IPs, so a copy can tell whether
  they moved since it read them.

Counters are cumulative within an *epoch* (one Redis lifetime, `ss:u:epoch`), so the
copy can keep the largest value seen and never count twice. A Redis that comes back
from a snapshot, or a replica promoted in its place, holds counters older than what
was copied: the epoch is tied to the server's `run_id` (`ss:u:run`), so a new server
lifetime starts a new epoch (each batch checks it first, `_EPOCH_SCRIPT`); the one
before stays readable (`ss:u:prev`) until its counters expire, so the usage answer
keeps what waits for a copy there. An IP's count can start again within an epoch
(expired for a key used weekly, or back after its count was stored and forgotten), so
each IP carries its own epoch (field `e:<ip>`), set when it enters.
"""

from __future__ import annotations

import functools
import secrets
import time
from datetime import UTC, datetime, timedelta

import redis

from apps.apikeys.gate.store import fail_open, local_store
from core import failopen
from core.sharedredis import redis_client

RECENT_IPS_KEPT = 10
#: Per key, IPs pushed out of the kept ones whose counts wait for a copy (the oldest
#: dropped beyond it): 10 + 50 IPs stay within Redis's compact 128-field hash encoding.
EVICTED_IPS_KEPT = 50
BUCKET_GRACE_SECONDS = 300
IP_TTL_SECONDS = 2 * 86400

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


def bucket_start(moment: datetime, granularity: str) -> datetime:
    moment = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return moment if granularity == "hour" else moment.replace(hour=0)


def bucket_end(start: datetime, granularity: str) -> datetime:
    return start + (timedelta(hours=1) if granularity == "hour" else timedelta(days=1))


@functools.cache
def _count_scripts(client: redis.Redis):
    return client.register_script(_COUNT_SCRIPT), client.register_script(_EPOCH_SCRIPT)


def count_args(
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


def counting_pipeline(client: redis.Redis):
    """A pipeline that checks the epoch first (a new server lifetime: a new epoch, the one
    before kept readable), and the counting script to queue on it."""
    count, epoch = _count_scripts(client)
    pipe = client.pipeline(transaction=False)
    epoch(args=[secrets.token_hex(16), PREVIOUS_EPOCH_SECONDS], client=pipe)
    return pipe, count


def add_counts(key_id: str, *, ip: str | None, requests: int, refused: int) -> None:
    """Add one use to the key's counters at once (one round trip to Redis, or this process)."""
    args = count_args(
        key_id, ip=ip, requests=requests, refused=refused, now=time.time(), ip_count=requests
    )
    client = redis_client()
    if client is None:
        local_store().count(args)
        return
    if failopen.given_up():
        return  # Redis did not answer earlier in this request: this use is not counted
    pipe, count = counting_pipeline(client)
    count(args=args, client=pipe)
    try:
        pipe.execute()
    except redis.RedisError:
        fail_open("key use not counted")
