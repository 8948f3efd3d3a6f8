"""Key usage in the database: the copy from the counters, pruning, and the usage answer.

`apps.apikeys.gate` counts on the request path (Redis, or this process's memory
without `REDIS_URL`). `flush_usage` copies every counter touched since the last
copy into `KeyUsage` / `KeyUsageIp`, keeping per (bucket, epoch) the largest
value seen, so copies may repeat or overlap without counting twice. It runs at
least once a minute: from the worker, and from a background thread that the
request path starts at most once per `USAGE_FLUSH_SECONDS` per process. A Redis
restart therefore loses at most the last minute.

`key_usage` answers SPEC §4.9: stored rows merged with the counters not yet
copied, so a request shows within a moment, on every process.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from django.conf import settings
from django.db import IntegrityError, connections, transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone

from apps.apikeys.gate import bucket_start, local_store, redis_client
from apps.apikeys.models import ApiKey, Granularity, KeyUsage, KeyUsageIp

logger = logging.getLogger("sigsentry.usage")

SPAN = {Granularity.HOUR: 48, Granularity.DAY: 90}
STEP = {Granularity.HOUR: timedelta(hours=1), Granularity.DAY: timedelta(days=1)}
RECENT_IPS_SHOWN = 5
IP_HISTORY = timedelta(days=90)

_CLEAN = """
local name, kind = ARGV[2], ARGV[3]
local same
if kind == 'ip' then
  local last = redis.call('ZRANGE', name .. ':seen', -1, -1, 'WITHSCORES')
  same = (last[2] or '') == ARGV[4]
else
  same = (redis.call('HGET', name, 'r') or '0') == ARGV[4]
    and (redis.call('HGET', name, 'f') or '0') == ARGV[5]
end
if same then redis.call('SREM', 'ss:u:dirty', ARGV[1]) end
return same and 1 or 0
"""


def _epoch_moment(seconds: str) -> datetime:
    return datetime.fromtimestamp(int(seconds), tz=UTC)


def _keep_largest(model, lookup: dict, values: dict) -> None:
    """Raise each of `values` to at least the given number (create the row if missing)."""
    largest = {name: Greatest(F(name), value) for name, value in values.items()}
    for _attempt in range(2):
        if model.objects.filter(**lookup).update(**largest):
            return
        try:
            with transaction.atomic():
                model.objects.create(**lookup, **values)
            return
        except IntegrityError:
            continue  # created meanwhile by another copy: raise it instead


def flush_usage() -> int:
    """Copy the counters touched since the last copy; the number of counters copied."""
    client = redis_client()
    if client is None:
        store = local_store()
        with store.lock:
            dirty = list(store.dirty)
            store.dirty.clear()
            buckets = {d: dict(store.buckets.get(d, {})) for d in dirty}
            ips = {k: dict(v) for k, v in store.ips.items() if (k, "ip", "") in dirty}
        entries = [(store.epoch, *d, buckets[d]) for d in dirty if d[1] != "ip"]
        ip_entries = [(store.epoch, key_id, seen) for key_id, seen in ips.items()]
        _store(entries, ip_entries)
        return len(dirty)
    members = [m.decode() for m in client.smembers("ss:u:dirty")]
    if not members:
        return 0
    parsed = [m.split("|") for m in members]
    pipe = client.pipeline(transaction=False)
    for epoch, key_id, kind, start in parsed:
        name = f"ss:u:{epoch}:{key_id}"
        if kind == "ip":
            pipe.hgetall(name + ":ip")
            pipe.zrange(name + ":seen", 0, -1, withscores=True)
        else:
            pipe.hgetall(f"{name}:{kind}:{start}")
    results = iter(pipe.execute())
    entries, ip_entries, checks = [], [], []
    for member, (epoch, key_id, kind, start) in zip(members, parsed, strict=True):
        name = f"ss:u:{epoch}:{key_id}"
        if kind == "ip":
            counts, seen = next(results), next(results)
            by_ip = {ip.decode(): (int(counts.get(ip, 0)), int(score)) for ip, score in seen}
            ip_entries.append((epoch, key_id, by_ip))
            checks.append((member, name, "ip", repr(seen[-1][1]) if seen else "", ""))
        else:
            values = {k.decode(): int(v) for k, v in next(results).items()}
            entries.append((epoch, key_id, kind, start, values))
            r, f = values.get("r", 0), values.get("f", 0)
            checks.append((member, f"{name}:{kind}:{start}", kind, str(r), str(f)))
    _store(entries, ip_entries)
    clean = client.register_script(_CLEAN)
    for member, name, kind, first, second in checks:
        # Forget the counter only if it did not move since it was read.
        clean(args=[member, name, kind, first if kind != "ip" else _score_text(first), second])
    return len(members)


def _score_text(value: str) -> str:
    """A sorted-set score as Redis writes it back (integers without a decimal point)."""
    if not value:
        return ""
    number = float(value)
    return str(int(number)) if number == int(number) else value


def _store(entries: list, ip_entries: list) -> None:
    key_ids = {uuid.UUID(e[1]) for e in entries} | {uuid.UUID(e[1]) for e in ip_entries}
    known = {str(k) for k in ApiKey.objects.filter(id__in=key_ids).values_list("id", flat=True)}
    for epoch, key_id, kind, start, values in entries:
        if key_id in known and values:
            _keep_largest(
                KeyUsage,
                {
                    "key_id": key_id,
                    "granularity": kind,
                    "start": _epoch_moment(start),
                    "epoch": epoch,
                },
                {"requests": values.get("r", 0), "refused": values.get("f", 0)},
            )
    for epoch, key_id, by_ip in ip_entries:
        if key_id not in known:
            continue
        for ip, (count, last_ms) in by_ip.items():
            _keep_largest(
                KeyUsageIp,
                {"key_id": key_id, "ip": ip, "epoch": epoch},
                {
                    "requests": count,
                    "last_seen_at": datetime.fromtimestamp(last_ms / 1000, tz=UTC),
                },
            )


def prune_usage(now: datetime | None = None) -> int:
    """Hourly rows older than 48 hours, daily rows older than 90 days, IPs unseen for 90 days.

    Revoked keys keep their history like any other key until it ages out.
    """
    now = now or timezone.now()
    deleted = 0
    for granularity, span in SPAN.items():
        oldest = bucket_start(now, granularity) - STEP[granularity] * span
        deleted += KeyUsage.objects.filter(granularity=granularity, start__lt=oldest).delete()[0]
    deleted += KeyUsageIp.objects.filter(last_seen_at__lt=now - IP_HISTORY).delete()[0]
    store = local_store()
    with store.lock:  # counters of closed periods already copied
        horizon = (now - timedelta(days=1, hours=1)).timestamp()
        for bucket in [b for b in store.buckets if b not in store.dirty]:
            if int(bucket[2]) < horizon:
                del store.buckets[bucket]
    return deleted


_flush_lock = threading.Lock()
_last_flush = [0.0]


def maybe_flush() -> None:
    """From the request path: start a copy in the background at most every USAGE_FLUSH_SECONDS."""
    interval = settings.USAGE_FLUSH_SECONDS
    now = time.monotonic()
    if not interval or now - _last_flush[0] < interval or not _flush_lock.acquire(blocking=False):
        return
    _last_flush[0] = now
    threading.Thread(target=_flush_in_background, daemon=True, name="usage-flush").start()


def _flush_in_background() -> None:
    try:
        flush_usage()
        prune_usage()
    except Exception:  # never let a copy failure reach anything else; the next one retries
        logger.warning("usage copy failed; counters kept for the next copy", exc_info=True)
    finally:
        connections.close_all()
        _flush_lock.release()


# ------------------------------------------------------------------ the answer


def _live(key_id: str, granularity: str, starts: list[datetime]):
    """The current epoch and its not-yet-copied counters: per bucket (r, f), and per IP."""
    client = redis_client()
    if client is None:
        store = local_store()
        with store.lock:
            buckets = {
                s: store.buckets.get((key_id, granularity, str(int(s.timestamp()))), {})
                for s in starts
            }
            seen = dict(store.ips.get(key_id, {}))
        return store.epoch, buckets, seen
    try:
        epoch = client.get("ss:u:epoch")
        if epoch is None:
            return None, {}, {}
        epoch = epoch.decode()
        base = f"ss:u:{epoch}:{key_id}"
        pipe = client.pipeline(transaction=False)
        for s in starts:
            pipe.hgetall(f"{base}:{granularity}:{int(s.timestamp())}")
        pipe.hgetall(base + ":ip")
        pipe.zrange(base + ":seen", 0, -1, withscores=True)
        *hashes, counts, seen = pipe.execute()
    except redis.RedisError:
        logger.warning("usage store unavailable: the usage answer shows copied counts only")
        return None, {}, {}
    buckets = {
        s: {k.decode(): int(v) for k, v in h.items()} for s, h in zip(starts, hashes, strict=True)
    }
    ips = {ip.decode(): (int(counts.get(ip, 0)), int(score)) for ip, score in seen}
    return epoch, buckets, ips


def key_usage(api_key: ApiKey, granularity: str, now: datetime | None = None) -> dict[str, Any]:
    """SPEC §4.9's answer: buckets oldest first (zero ones included), totals, recent IPs."""
    now = now or timezone.now()
    newest = bucket_start(now, granularity)
    starts = [newest - STEP[granularity] * i for i in range(SPAN[granularity] - 1, -1, -1)]
    epoch, live, live_ips = _live(str(api_key.id), granularity, starts)
    stored: dict[datetime, list[int]] = defaultdict(lambda: [0, 0])
    current: dict[datetime, list[int]] = defaultdict(lambda: [0, 0])
    rows = KeyUsage.objects.filter(key=api_key, granularity=granularity, start__gte=starts[0])
    for row in rows.values_list("start", "epoch", "requests", "refused"):
        target = current if row[1] == epoch else stored
        target[row[0]][0] += row[2]
        target[row[0]][1] += row[3]
    series = []
    for start in starts:
        counts = live.get(start, {})
        requests = stored[start][0] + max(current[start][0], counts.get("r", 0))
        refused = stored[start][1] + max(current[start][1], counts.get("f", 0))
        series.append({"start": start, "requests": requests, "refused": refused})
    return {
        "keyId": api_key.id,
        "granularity": granularity,
        "series": series,
        "total": {
            "requests": sum(b["requests"] for b in series),
            "refused": sum(b["refused"] for b in series),
        },
        "recentIps": recent_ips(api_key, epoch, live_ips),
    }


def recent_ips(api_key: ApiKey, epoch: str | None, live: dict) -> list[dict[str, Any]]:
    requests: dict[str, int] = defaultdict(int)
    current: dict[str, int] = defaultdict(int)
    last_seen: dict[str, datetime] = {}
    for ip, row_epoch, count, seen_at in KeyUsageIp.objects.filter(key=api_key).values_list(
        "ip", "epoch", "requests", "last_seen_at"
    ):
        (current if row_epoch == epoch else requests)[ip] += count
        last_seen[ip] = max(last_seen.get(ip, seen_at), seen_at)
    for ip, (count, last_ms) in live.items():
        current[ip] = max(current[ip], count)
        moment = datetime.fromtimestamp(last_ms / 1000, tz=UTC)
        last_seen[ip] = max(last_seen.get(ip, moment), moment)
    newest = sorted(last_seen, key=last_seen.__getitem__, reverse=True)[:RECENT_IPS_SHOWN]
    return [
        {"ip": ip, "lastSeenAt": last_seen[ip], "requests": requests[ip] + current[ip]}
        for ip in newest
    ]
