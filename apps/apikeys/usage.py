"""Key usage in the database: the copy from the counters, pruning, and the usage answer.

`apps.apikeys.gate` counts on the request path (Redis, or this process's memory
without `REDIS_URL`). `flush_usage` copies every counter touched since the last
copy into `KeyUsage` / `KeyUsageIp`, keeping per (bucket, epoch) the largest
value seen, so copies may repeat or overlap without counting twice. Each process
that counts a key use makes sure a copy runs within `USAGE_FLUSH_SECONDS` (a
background timer), and `manage.py flush_usage` runs one for cron and operators.
A Redis restart therefore loses at most the last minute.

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
from itertools import chain
from typing import Any

import redis
from django.conf import settings
from django.db import IntegrityError, connections, transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone

from apps.apikeys.gate.batch import send_pending_counts
from apps.apikeys.gate.counters import BUCKET_GRACE_SECONDS, bucket_end, bucket_start
from apps.apikeys.gate.store import local_store, redis_client
from apps.apikeys.models import ApiKey, Granularity, KeyUsage, KeyUsageIp
from core import failopen

logger = logging.getLogger("sigsentry.usage")

SPAN = {Granularity.HOUR: 48, Granularity.DAY: 90}
STEP = {Granularity.HOUR: timedelta(hours=1), Granularity.DAY: timedelta(days=1)}
RECENT_IPS_SHOWN = 5
IP_HISTORY = timedelta(days=90)

# Forget what a copy stored, unless it moved since the copy read it. ARGV: 1 the dirty
# marker, 2 the counters' name, 3 the kind ('ip', 'hour', 'day'), 4-5 what the copy read
# (ip: the newest last-seen score and `#n`; a bucket: `r` and `f`), then for 'ip' one
# (ip, count, epoch) triple per pushed-out IP it stored.
_CLEAN = """
local name, kind = ARGV[2], ARGV[3]
local same
if kind == 'ip' then
  local ips, gone = name .. ':ip', name .. ':gone'
  local last = redis.call('ZRANGE', name .. ':seen', -1, -1, 'WITHSCORES')
  same = (last[2] or '') == ARGV[4] and (redis.call('HGET', ips, '#n') or '') == ARGV[5]
  -- pushed-out IPs this copy stored (ip, count, epoch): forgotten unless counted since
  for i = 6, #ARGV, 3 do
    local ip = ARGV[i]
    if redis.call('ZSCORE', gone, ip) and redis.call('HGET', ips, ip) == ARGV[i + 1]
        and (redis.call('HGET', ips, 'e:' .. ip) or '') == ARGV[i + 2] then
      redis.call('ZREM', gone, ip)
      redis.call('HDEL', ips, ip, 'e:' .. ip)
    end
  end
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
    """Copy the counters touched since the last copy; the number of counters copied.

    This process's own counts not yet sent to Redis (its batch) are sent first, so a
    copy never misses what the process that runs it has counted."""
    client = redis_client()
    if client is None:
        store = local_store()
        with store.lock:
            dirty = list(store.dirty)
            store.dirty.clear()
            buckets = {d: dict(store.buckets.get(d, {})) for d in dirty}
            ips = {k: dict(v) for k, v in store.ips.items() if (k, "ip", "") in dirty}
            gone = {k: dict(store.gone.get(k, {})) for k in ips}
        entries = [(store.epoch, *d, buckets[d]) for d in dirty if d[1] != "ip"]
        ip_entries = [(key_id, seen | gone[key_id]) for key_id, seen in ips.items()]
        try:
            _store(entries, ip_entries)
        except BaseException:
            with store.lock:  # not stored: copied by the next copy, never pruned before
                store.dirty.update(dirty)
            raise
        with store.lock:  # pushed-out IPs now stored: forgotten unless counted since
            for key_id, stored in gone.items():
                waiting = store.gone.get(key_id, {})
                for ip, value in stored.items():
                    if waiting.get(ip) == value:
                        del waiting[ip]
        return len(dirty)
    send_pending_counts()
    members, foreign = [], []
    for member in client.smembers("ss:u:dirty"):
        text = member.decode(errors="replace")
        parts = text.split("|")
        if len(parts) == 4 and _key_uuid(parts[1]) is not None:
            members.append(text)
        else:
            foreign.append(member)
    if foreign:
        # Not written by this code (a key id is a UUID): forgotten, never blocking the copy.
        client.srem("ss:u:dirty", *foreign)
        logger.warning("usage copy: %d foreign counter names ignored", len(foreign))
    if not members:
        return 0
    parsed = [m.split("|") for m in members]
    pipe = client.pipeline(transaction=False)
    for epoch, key_id, kind, start in parsed:
        name = f"ss:u:{epoch}:{key_id}"
        if kind == "ip":
            pipe.hgetall(name + ":ip")
            pipe.zrange(name + ":seen", 0, -1, withscores=True)
            pipe.zrange(name + ":gone", 0, -1, withscores=True)
        else:
            pipe.hgetall(f"{name}:{kind}:{start}")
    results = iter(pipe.execute())
    entries, ip_entries, checks = [], [], []
    for member, (epoch, key_id, kind, start) in zip(members, parsed, strict=True):
        name = f"ss:u:{epoch}:{key_id}"
        if kind == "ip":
            counts, seen, gone = next(results), next(results), next(results)
            ip_entries.append((key_id, _ips_of(counts, [*seen, *gone], epoch)))
            last = _score_text(seen[-1][1]) if seen else ""
            stored = [
                (ip, counts[ip], counts.get(b"e:" + ip, b"")) for ip, _ in gone if ip in counts
            ]
            checks.append((member, name, "ip", [last, counts.get(b"#n", b""), *chain(*stored)]))
        else:
            values = {k.decode(): int(v) for k, v in next(results).items()}
            entries.append((epoch, key_id, kind, start, values))
            r, f = values.get("r", 0), values.get("f", 0)
            checks.append((member, f"{name}:{kind}:{start}", kind, [str(r), str(f)]))
    _store(entries, ip_entries)
    # Forget each counter only if it did not move since it was read: one round trip for all.
    clean, pipe = client.register_script(_CLEAN), client.pipeline(transaction=False)
    for member, name, kind, read in checks:
        clean(args=[member, name, kind, *read], client=pipe)
    pipe.execute()
    return len(members)


def _ips_of(counts: dict, seen: list, epoch: str) -> dict[str, tuple[int, int, str]]:
    """Per IP of a key's Redis counters (`seen`: the kept and pushed-out IPs with their
    last-seen scores): (requests, last seen in ms, the IP's epoch).

    Each IP has its own epoch, set when it entered the hash (`e:<ip>`, see gate.counters); a hash
    written before that has one for all its IPs (`#`), and before that the Redis epoch."""
    shared = counts.get(b"#")
    shared = shared.decode() if shared else epoch
    ips = {}
    for raw_ip, score in seen:
        own = counts.get(b"e:" + raw_ip)
        ips[raw_ip.decode()] = (
            int(counts.get(raw_ip, 0)),
            int(score),
            own.decode() if own else shared,
        )
    return ips


def _score_text(score: float) -> str:
    """A sorted-set score as Redis writes it back (integers without a decimal point)."""
    return str(int(score)) if score == int(score) else repr(score)


def _key_uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def _store(entries: list, ip_entries: list) -> None:
    key_ids = {uuid.UUID(e[1]) for e in entries} | {uuid.UUID(e[0]) for e in ip_entries}
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
    for key_id, by_ip in ip_entries:
        if key_id not in known:
            continue
        for ip, (count, last_ms, ip_epoch) in by_ip.items():
            _keep_largest(
                KeyUsageIp,
                {"key_id": key_id, "ip": ip, "epoch": ip_epoch},
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
_flush_pending = [False]


def maybe_flush() -> None:
    """From the request path, after a key use was counted: make sure a copy runs within
    USAGE_FLUSH_SECONDS, in the background.

    A timer rather than "copy now if the last copy is old": the counts of a burst
    that ends a quiet process's traffic are then copied too, before their Redis
    bucket expires and before a Redis restart could lose them.
    """
    interval = settings.USAGE_FLUSH_SECONDS
    if not interval:
        return
    with _flush_lock:
        if _flush_pending[0]:
            return
        _flush_pending[0] = True
        delay = max(0.0, _last_flush[0] + interval - time.monotonic())
    timer = threading.Timer(delay, _flush_in_background)
    timer.daemon = True
    timer.name = "usage-flush"
    timer.start()


def _flush_in_background() -> None:
    with _flush_lock:
        # Counts arriving from now on need the next copy.
        _flush_pending[0] = False
        _last_flush[0] = time.monotonic()
    try:
        flush_usage()
        prune_usage()
    except Exception:  # never let a copy failure reach anything else
        logger.warning("usage copy failed; counters kept for the next copy", exc_info=True)
        maybe_flush()
    finally:
        connections.close_all()


# ------------------------------------------------------------------ the answer


def bucket_starts(granularity: str, now: datetime, count: int | None = None) -> list[datetime]:
    """The starts of the last `count` buckets (SPAN by default), oldest first, now's last."""
    count = SPAN[granularity] if count is None else count
    newest = bucket_start(now, granularity)
    return [newest - STEP[granularity] * i for i in range(count - 1, -1, -1)]


def _open(start: datetime, granularity: str, now: datetime) -> bool:
    """Whether the bucket's Redis hash may still exist (it expires after its period + grace)."""
    return bucket_end(start, granularity) + timedelta(seconds=BUCKET_GRACE_SECONDS + 60) > now


def _copied_only() -> None:
    """Redis did not answer a usage read: the answer shows copied counts, and the request's
    other reads do not wait for it again (250 ms once, not per read)."""
    logger.warning("usage store unavailable: the usage answer shows copied counts only")
    failopen.gave_up("key_usage")


def _live_epochs(client: redis.Redis) -> list[str]:
    """The Redis epochs whose counters may wait for a copy: the current one, and the one
    before it while its counters live (a restart from a snapshot, a promoted replica)."""
    return [e.decode() for e in client.mget("ss:u:epoch", "ss:u:prev") if e is not None]


def _live_counts(key_ids: list[str], granularity: str, starts: list[datetime], now: datetime):
    """The live epochs and their counters not yet copied: {(key id, start): {epoch: {"r",
    "f"}}}."""
    client = redis_client()
    if client is None:
        store = local_store()
        with store.lock:
            live = {
                (key_id, s): {store.epoch: dict(store.buckets[bucket])}
                for key_id in key_ids
                for s in starts
                if (bucket := (key_id, granularity, str(int(s.timestamp())))) in store.buckets
            }
        return [store.epoch], live
    wanted = [(key_id, s) for key_id in key_ids for s in starts if _open(s, granularity, now)]
    if failopen.given_up():
        return [], {}  # Redis did not answer earlier in this request: not waited for again
    try:
        epochs = _live_epochs(client)
        pipe = client.pipeline(transaction=False)
        for epoch in epochs:
            for key_id, s in wanted:
                pipe.hgetall(f"ss:u:{epoch}:{key_id}:{granularity}:{int(s.timestamp())}")
        hashes = iter(pipe.execute())
    except redis.RedisError:
        _copied_only()
        return [], {}
    live: dict[tuple[str, datetime], dict[str, dict[str, int]]] = defaultdict(dict)
    for epoch in epochs:
        for bucket in wanted:
            if counts := next(hashes):
                live[bucket][epoch] = {k.decode(): int(v) for k, v in counts.items()}
    return epochs, live


def usage_series(
    key_ids: list, granularity: str, starts: list[datetime], now: datetime | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Per key id (text): `{"start", "requests", "refused"}` for each of `starts` (oldest
    first, zero buckets included), copied rows merged with the counters not yet copied.

    Rows of other epochs add up; for an epoch Redis still holds, the larger of the copy
    and the live counter wins (the copy may be older, never larger).
    """
    now = now or timezone.now()
    ids = [str(key_id) for key_id in key_ids]
    epochs, live = _live_counts(ids, granularity, starts, now)
    past: dict[tuple[str, datetime], list[int]] = defaultdict(lambda: [0, 0])
    copied: dict[tuple[str, datetime, str], list[int]] = defaultdict(lambda: [0, 0])
    rows = KeyUsage.objects.filter(
        key_id__in=ids, granularity=granularity, start__gte=starts[0], start__lte=starts[-1]
    ).values_list("key_id", "start", "epoch", "requests", "refused")
    for key_id, start, row_epoch, requests, refused in rows:
        if row_epoch in epochs:
            counts = copied[(str(key_id), start, row_epoch)]
        else:
            counts = past[(str(key_id), start)]
        counts[0] += requests
        counts[1] += refused
    series: dict[str, list[dict[str, Any]]] = {}
    for key_id in ids:
        buckets = []
        for start in starts:
            total = list(past.get((key_id, start), (0, 0)))
            for epoch in epochs:
                counts = live.get((key_id, start), {}).get(epoch, {})
                stored = copied.get((key_id, start, epoch), (0, 0))
                total[0] += max(stored[0], counts.get("r", 0))
                total[1] += max(stored[1], counts.get("f", 0))
            buckets.append({"start": start, "requests": total[0], "refused": total[1]})
        series[key_id] = buckets
    return series


def key_usage(api_key: ApiKey, granularity: str, now: datetime | None = None) -> dict[str, Any]:
    """SPEC §4.9's answer: buckets oldest first (zero ones included), totals, recent IPs."""
    now = now or timezone.now()
    series = usage_series([api_key.id], granularity, bucket_starts(granularity, now), now)
    buckets = series[str(api_key.id)]
    return {
        "keyId": api_key.id,
        "granularity": granularity,
        "series": buckets,
        "total": {
            "requests": sum(b["requests"] for b in buckets),
            "refused": sum(b["refused"] for b in buckets),
        },
        "recentIps": recent_ips(api_key),
    }


def _live_ips(key_id: str) -> dict[str, dict[str, tuple[int, int]]]:
    """The key's IP counters not yet copied: per IP, per IP epoch, (requests, last seen in
    ms), from every live Redis epoch."""
    client = redis_client()
    if client is None:
        store = local_store()
        with store.lock:
            kept = {**store.gone.get(key_id, {}), **store.ips.get(key_id, {})}
        return {ip: {epoch: (count, last)} for ip, (count, last, epoch) in kept.items()}
    if failopen.given_up():
        return {}
    try:
        epochs = _live_epochs(client)
        pipe = client.pipeline(transaction=False)
        for epoch in epochs:
            base = f"ss:u:{epoch}:{key_id}"
            pipe.hgetall(base + ":ip")
            pipe.zrange(base + ":seen", 0, -1, withscores=True)
            pipe.zrange(base + ":gone", 0, -1, withscores=True)
        answers = pipe.execute()
    except redis.RedisError:
        _copied_only()
        return {}
    live: dict[str, dict[str, tuple[int, int]]] = defaultdict(dict)
    for i, epoch in enumerate(epochs):
        counts, seen, gone = answers[3 * i : 3 * i + 3]
        for ip, (count, last, ip_epoch) in _ips_of(counts, [*seen, *gone], epoch).items():
            live[ip][ip_epoch] = (count, last)
    return live


def recent_ips(api_key: ApiKey) -> list[dict[str, Any]]:
    """The RECENT_IPS_SHOWN most recently seen client IPs, newest first, with their requests.

    Copied rows of an IP's other epochs add up; for its live epoch the larger of the copy
    and the live counter wins (the copy may be older, never larger)."""
    live = _live_ips(str(api_key.id))
    requests: dict[str, int] = defaultdict(int)
    copied: dict[tuple[str, str], int] = defaultdict(int)
    last_seen: dict[str, datetime] = {}
    for ip, row_epoch, count, seen_at in KeyUsageIp.objects.filter(key=api_key).values_list(
        "ip", "epoch", "requests", "last_seen_at"
    ):
        if row_epoch in live.get(ip, {}):
            copied[(ip, row_epoch)] += count
        else:
            requests[ip] += count
        last_seen[ip] = max(last_seen.get(ip, seen_at), seen_at)
    for ip, per_epoch in live.items():
        for ip_epoch, (count, last_ms) in per_epoch.items():
            requests[ip] += max(copied[(ip, ip_epoch)], count)
            moment = datetime.fromtimestamp(last_ms / 1000, tz=UTC)
            last_seen[ip] = max(last_seen.get(ip, moment), moment)
    newest = sorted(last_seen, key=last_seen.__getitem__, reverse=True)[:RECENT_IPS_SHOWN]
    return [{"ip": ip, "lastSeenAt": last_seen[ip], "requests": requests[ip]} for ip in newest]
