"""The copy of the key-use counters into the database, and pruning.

`apps.apikeys.gate` counts on the request path (Redis, or this process's memory
without `REDIS_URL`). `flush_usage` copies every counter touched since the last
copy into `KeyUsage` / `KeyUsageIp`, keeping per (bucket, epoch) the largest
value seen, so copies may repeat or overlap without counting twice. Each process
that counts a key use makes sure a copy runs within `USAGE_FLUSH_SECONDS` (a
background timer), and `manage.py flush_usage` runs one for cron and operators.
A Redis restart therefore loses at most the last minute.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import chain

import redis
from django.conf import settings
from django.db import connections, transaction
from django.db.models import Count, Exists, Max, OuterRef
from django.utils import timezone

from apps.apikeys.gate.batch import send_pending_counts
from apps.apikeys.gate.counters import EVICTED_IPS_KEPT, RECENT_IPS_KEPT, bucket_start
from apps.apikeys.gate.store import local_store
from apps.apikeys.models import ApiKey, KeyUsage, KeyUsageIp
from apps.apikeys.usage.answer import SPAN, STEP, ips_of
from core.queries import IN_CHUNK, filter_in_chunks, upsert_largest
from core.sharedredis import redis_client

logger = logging.getLogger("sigsentry.usage")

IP_HISTORY = timedelta(days=90)
#: An IP's rows of epochs that ended at least this long ago are added up into one.
FOLD_AFTER = timedelta(minutes=10)
#: The epoch of that row: no counter has it (theirs are random hex), so no copy writes it.
FOLDED = "folded"
#: Client IPs stored per key, the most recently seen: as many as the live store can count
#: for a key (kept and pushed out), so an IP it still counts keeps its copied requests.
IPS_STORED = RECENT_IPS_KEPT + EVICTED_IPS_KEPT
#: (key, IP) pairs folded per transaction, in a few statements.
FOLD_BATCH = 1000

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


#: One copy from Redis at a time, across every process: the worker's and each web
#: process's copies of the same 60,000 counters ran at once, the same work three times,
#: 10 to 33 s each, and another organization's requests waited behind them for the CPU
#: (a fairness audit: p99 14 ms to 241 ms). Held at most this long (a copier that dies
#: holds it no longer); a copy that outlives it overlaps the next, as before: copies write
#: what they read, and forget a counter only if it did not move since.
COPY_LOCK = "ss:u:copying"
COPY_LOCK_SECONDS = 120


def flush_usage(*, wait: bool = True) -> int | None:
    """Copy the counters touched since the last copy; the number of counters copied, or
    None when another process was copying and `wait` is off (the timers and the worker's
    schedule: they try again at their next turn).

    This process's own counts not yet sent to Redis (its batch) are sent first, so a
    copy never misses what the process that runs it has counted."""
    client = redis_client()
    if client is None:
        with local_store().pending_copy() as pending:
            _store(pending.buckets, pending.ips)
        return pending.touched
    send_pending_counts()
    with _copy_lock(client, wait=wait) as renew:
        return None if renew is None else _copy_from_redis(client, renew)


def resync_usage(*, wait: bool = True) -> int | None:
    """Copy every live counter, not only those touched since the last copy (`flush_usage`
    forgets a counter once copied): after a restore of the database to an earlier point,
    the counts copied since were dropped with it and are in Redis still (a backup/restore
    audit: they were never copied again). Safe: a copy keeps the largest value per bucket.
    The number of counters copied, or None as `flush_usage`'s."""
    client = redis_client()
    if client is not None:
        mark_live_counters(client)
    return flush_usage(wait=wait)


#: SADD at most this many names at once.
_MARK_BATCH = 1000


def mark_live_counters(client: redis.Redis) -> int:
    """Put every live counter back among those to copy (`ss:u:dirty`), found by SCAN (never
    KEYS: it would stop Redis while it walks every name); the number marked. Bucket counters
    of any epoch; a key's IPs of the current epoch only: an IP's row of an ended epoch may
    have been folded into its `FOLDED` row (`_fold_ended_epochs`), and copied again it would
    count twice."""
    current = client.get("ss:u:epoch")
    current = current.decode() if current is not None else None
    marked = 0
    batch: set[str] = set()
    for name in client.scan_iter(match="ss:u:*", count=_MARK_BATCH):
        member = _dirty_member(name.decode(errors="replace"), current)
        if member is not None:
            batch.add(member)
        if len(batch) >= _MARK_BATCH:
            marked += client.sadd("ss:u:dirty", *batch)
            batch.clear()
    if batch:
        marked += client.sadd("ss:u:dirty", *batch)
    return marked


def _dirty_member(name: str, current_epoch: str | None) -> str | None:
    """The copy list's member (`epoch|key|kind|start`, as the counting script adds it) for a
    counter's name, or None for any other name (the epoch, the lock, the list itself)."""
    parts = name.split(":")
    if len(parts) < 5 or _key_uuid(parts[3]) is None:
        return None
    epoch, key_id, kind = parts[2], parts[3], parts[4]
    if len(parts) == 6 and kind in ("hour", "day") and parts[5].isdigit():
        return f"{epoch}|{key_id}|{kind}|{parts[5]}"
    if len(parts) == 5 and kind in ("ip", "seen", "gone") and epoch == current_epoch:
        return f"{epoch}|{key_id}|ip|"
    return None


@contextlib.contextmanager
def _copy_lock(client: redis.Redis, *, wait: bool = True) -> Iterator[Callable[[], None] | None]:
    """The copy lock (one copy or fold at a time, across processes), held while the block
    runs; the block gets what renews it, or None when another holder kept it past
    COPY_LOCK_SECONDS (or at once, `wait` off)."""
    lock = client.lock(
        COPY_LOCK,
        timeout=COPY_LOCK_SECONDS,
        blocking=wait,
        blocking_timeout=COPY_LOCK_SECONDS if wait else None,
    )
    if not lock.acquire():
        yield None
        return

    def renew() -> None:
        """Hold the lock another COPY_LOCK_SECONDS: a long copy keeps it to its end (one of
        15,990 counters and 15,000 IPs to fold took 173 s, and another copy began)."""
        with contextlib.suppress(redis.exceptions.LockError):  # lost: overlaps, as before
            lock.reacquire()

    try:
        yield renew
    finally:
        with contextlib.suppress(redis.exceptions.LockError):  # held past its time
            lock.release()


def _copy_from_redis(client: redis.Redis, renew: Callable[[], None]) -> int:
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
        # So a release that changes the member format names a new set (`ss:u2:dirty`):
        # the release beside it would drop its members here, and their counts with them.
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
            ip_entries.append((key_id, ips_of(counts, [*seen, *gone], epoch)))
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
    _store(entries, ip_entries, renew)
    renew()
    # Forget each counter only if it did not move since it was read: one round trip for all.
    clean, pipe = client.register_script(_CLEAN), client.pipeline(transaction=False)
    for member, name, kind, read in checks:
        clean(args=[member, name, kind, *read], client=pipe)
    pipe.execute()
    return len(members)


def _score_text(score: float) -> str:
    """A sorted-set score as Redis writes it back (integers without a decimal point)."""
    return str(int(score)) if score == int(score) else repr(score)


def _key_uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def _store(entries: list, ip_entries: list, renew: Callable[[], None] | None = None) -> None:
    """Each counter's value into its row, the larger of the two kept: two upserts (in
    chunks), however many keys were counted."""
    key_ids = {uuid.UUID(e[1]) for e in entries} | {uuid.UUID(e[0]) for e in ip_entries}
    known = {str(k.id) for k in filter_in_chunks(ApiKey.objects.only("id"), "id", key_ids)}
    buckets = [
        {
            "key": key_id,
            "granularity": kind,
            "start": _epoch_moment(start),
            "epoch": epoch,
            "requests": values.get("r", 0),
            "refused": values.get("f", 0),
        }
        for epoch, key_id, kind, start, values in entries
        if key_id in known and values
    ]
    ips = [
        {
            "key": key_id,
            "ip": ip,
            "epoch": ip_epoch,
            "requests": count,
            "last_seen_at": datetime.fromtimestamp(last_ms / 1000, tz=UTC),
        }
        for key_id, by_ip in ip_entries
        if key_id in known
        for ip, (count, last_ms, ip_epoch) in by_ip.items()
    ]
    upsert_largest(
        KeyUsage, ("key", "granularity", "start", "epoch"), ("requests", "refused"), buckets
    )
    upsert_largest(KeyUsageIp, ("key", "ip", "epoch"), ("requests", "last_seen_at"), ips)
    _forget_older_ips({row["key"] for row in ips})
    if renew is not None:
        renew()
    _fold_ended_epochs({row["key"] for row in ips}, renew=renew)


def _forget_older_ips(key_ids: set[str]) -> None:
    """Delete the rows of each key's IPs beyond its IPS_STORED most recently seen: the
    table holds at most that many addresses a key, not one for every client it ever had
    (an SDK key's are its website's visitors). An IP that returns from beyond them counts
    again from zero."""
    # Counted in the database: only the keys past the bound come back, not their rows.
    crowded = (
        KeyUsageIp.objects.values("key_id")
        .annotate(ips=Count("ip", distinct=True))
        .filter(ips__gt=IPS_STORED)
    )
    over = [row["key_id"] for row in filter_in_chunks(crowded, "key_id", key_ids)]
    seen_by_key: dict[str, list] = defaultdict(list)
    latest = KeyUsageIp.objects.values("key_id", "ip").annotate(seen=Max("last_seen_at"))
    for row in filter_in_chunks(latest, "key_id", over):
        seen_by_key[row["key_id"]].append((row["seen"], row["ip"]))
    for key_id, seen in seen_by_key.items():
        older = sorted(seen, reverse=True)[IPS_STORED:]
        # Unless seen since they were read (a copy in another process): that IP stays whole.
        seen_since = KeyUsageIp.objects.filter(
            key_id=OuterRef("key_id"), ip=OuterRef("ip"), last_seen_at__gt=older[0][0]
        )
        ips = [ip for _, ip in older]
        for start in range(0, len(ips), IN_CHUNK):  # bound parameters: at most 65,535
            KeyUsageIp.objects.filter(
                ~Exists(seen_since), key_id=key_id, ip__in=ips[start : start + IN_CHUNK]
            ).delete()


def _fold_ended_epochs(
    key_ids: set[str] | None, now: datetime | None = None, renew: Callable[[], None] | None = None
) -> None:
    """Add up each IP's rows of epochs long ended into its one `FOLDED` row.

    An IP pushed out of the live counters and copied is forgotten there; seen again, it
    counts from zero under a new epoch, and the next copy stores a new row. A key used
    from a few dozen addresses in turn made a row per address per minute, without bound:
    192,000 rows of one key took its usage answer from 20 ms to 1.9 s (found by a soak
    audit). An epoch has ended when a later one has begun (the counters give an IP a new
    epoch only once its old one is gone from them). Folded: each of an IP's rows last seen
    over `FOLD_AFTER` ago but the newest of those, so a later epoch, begun before its row
    was last seen, is over `FOLD_AFTER` old too. No copy can still be writing a folded
    epoch (one that had read it before it was forgotten would have stalled that long), and
    a row written again would be counted twice. The rows are locked as they are folded:
    two copies fold a row once. Bound: per IP, its rows of the last `FOLD_AFTER` and two.
    `key_ids` None: every key's (`fold_idle_keys`). FOLD_BATCH pairs a transaction, `renew`
    called after each (a copy's: it holds the copy lock on)."""
    horizon = (now or timezone.now()) - FOLD_AFTER
    ended = (
        KeyUsageIp.objects.filter(last_seen_at__lt=horizon)
        .exclude(epoch=FOLDED)
        .values_list("key_id", "ip")
        .annotate(rows=Count("id"))
        .filter(rows__gt=1)
    )
    found = ended if key_ids is None else filter_in_chunks(ended, "key_id", key_ids)
    pairs = sorted((str(key_id), str(ip)) for key_id, ip, _rows in found)
    for start in range(0, len(pairs), FOLD_BATCH):
        _fold_pairs(set(pairs[start : start + FOLD_BATCH]), horizon)
        if renew is not None:
            renew()


def _fold_pairs(pairs: set[tuple[str, str]], horizon: datetime) -> None:
    """Fold `pairs` (key id, IP) in one transaction of a few statements, whatever their
    number: one per pair took 22.9 s for 3,000 pairs (7.6 ms each, six statements)."""
    ended = (
        KeyUsageIp.objects.select_for_update()
        .filter(last_seen_at__lt=horizon)
        .exclude(epoch=FOLDED)
        .order_by("key_id", "ip", "last_seen_at", "pk")
        .only("key_id", "ip", "requests", "last_seen_at")
    )
    with transaction.atomic():
        # Locked in one order (the keys' ended rows: a key's other IPs too, left as they are).
        rows_by_pair: dict[tuple[str, str], list[KeyUsageIp]] = defaultdict(list)
        for row in filter_in_chunks(ended, "key_id", sorted({key for key, _ip in pairs})):
            rows_by_pair[(str(row.key_id), str(row.ip))].append(row)
        gone, totals = [], {}
        for pair, rows in rows_by_pair.items():
            rows = rows[:-1]  # the newest stays: its epoch may be the one still counted
            if pair not in pairs or not rows:  # not asked, or folded by another copy meanwhile
                continue
            gone.extend(row.pk for row in rows)
            totals[pair] = (
                sum(row.requests for row in rows),
                max(row.last_seen_at for row in rows),
            )
        for start in range(0, len(gone), IN_CHUNK):  # bound parameters: at most 65,535
            KeyUsageIp.objects.filter(pk__in=gone[start : start + IN_CHUNK]).delete()
        _add_to_folded(totals)


def _add_to_folded(totals: dict[tuple[str, str], tuple[int, datetime]]) -> None:
    """Add (requests, last seen) to each pair's `FOLDED` row, made if it has none."""
    rows = [
        {"key": key, "ip": ip, "epoch": FOLDED, "requests": requests, "last_seen_at": seen}
        for (key, ip), (requests, seen) in totals.items()
    ]
    upsert_largest(KeyUsageIp, ("key", "ip", "epoch"), ("last_seen_at",), rows, added=("requests",))


def fold_idle_keys(now: datetime | None = None) -> None:
    """`_fold_ended_epochs` for every key, once a day (the worker's housekeeping): the copies
    fold only the keys they copy, so an idle key kept its last ten minutes' rows until its
    next use (found by a second soak). A scan of the table's ended rows: not after every
    copy. Under the copy lock: a batch locks its keys' ended rows in the database's order
    of IPs, a copy's upsert in the text order, so the two could deadlock (a review)."""
    client = redis_client()
    if client is None:  # one process counts and copies: nothing to wait for
        _fold_ended_epochs(None, now)
        return
    try:
        with _copy_lock(client) as renew:
            if renew is None:
                logger.warning("usage fold skipped: a copy held the lock; the next day's folds")
                return
            _fold_ended_epochs(None, now, renew=renew)
    except redis.exceptions.RedisError:  # no copy runs without Redis either
        logger.warning("usage fold without the copy lock: Redis did not answer")
        _fold_ended_epochs(None, now)


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
    # this process's counters of closed periods, already copied
    local_store().drop_copied(before=(now - timedelta(days=1, hours=1)).timestamp())
    return deleted


def forget_old_last_use(now: datetime | None = None) -> int:
    """Clear `lastUsedIp` and `lastUsedUserAgent` of the keys unused for IP_HISTORY, as the
    usage IPs go: `lastUsedAt` stays. The worker's daily housekeeping runs it. The number
    of keys cleared."""
    unused = (now or timezone.now()) - IP_HISTORY
    return (
        ApiKey.objects.filter(last_used_at__lt=unused)
        .exclude(last_used_ip=None, last_used_user_agent="")
        .update(last_used_ip=None, last_used_user_agent="")
    )


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
        if flush_usage(wait=False) is None:
            maybe_flush()  # another process was copying: copy what came since at the next turn
        prune_usage()
    except Exception:  # never let a copy failure reach anything else
        logger.warning("usage copy failed; counters kept for the next copy", exc_info=True)
        maybe_flush()
    finally:
        connections.close_all()
