"""The usage answer (SPEC §4.9): stored rows merged with the counters not yet copied, so
a request shows within a moment, on every process.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from django.utils import timezone

from apps.apikeys.gate.counters import BUCKET_GRACE_SECONDS, bucket_end, bucket_start
from apps.apikeys.gate.store import fail_open, local_store
from apps.apikeys.models import ApiKey, Granularity, KeyUsage, KeyUsageIp
from core import failopen
from core.sharedredis import redis_client

#: Redis did not answer a usage read: the answer shows copied counts, and the request's
#: other reads do not wait for it again (`fail_open`: 250 ms once, not per read).
COPIED_ONLY = "the usage answer shows copied counts only"
#: How many buckets the answer shows, and how long the copies keep them (`prune_usage`).
SPAN = {Granularity.HOUR: 48, Granularity.DAY: 90}
STEP = {Granularity.HOUR: timedelta(hours=1), Granularity.DAY: timedelta(days=1)}
RECENT_IPS_SHOWN = 5


def ips_of(counts: dict, seen: list, epoch: str) -> dict[str, tuple[int, int, str]]:
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


def bucket_starts(granularity: str, now: datetime, count: int | None = None) -> list[datetime]:
    """The starts of the last `count` buckets (SPAN by default), oldest first, now's last."""
    count = SPAN[granularity] if count is None else count
    newest = bucket_start(now, granularity)
    return [newest - STEP[granularity] * i for i in range(count - 1, -1, -1)]


def _open(start: datetime, granularity: str, now: datetime) -> bool:
    """Whether the bucket's Redis hash may still exist (it expires after its period + grace)."""
    return bucket_end(start, granularity) + timedelta(seconds=BUCKET_GRACE_SECONDS + 60) > now


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
        wanted = {
            (key_id, s): (key_id, granularity, str(int(s.timestamp())))
            for key_id in key_ids
            for s in starts
        }
        counts = store.bucket_counts(wanted.values())
        live = {at: {store.epoch: counts[b]} for at, b in wanted.items() if b in counts}
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
        fail_open(COPIED_ONLY)
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
        kept = local_store().ip_counts(key_id)
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
        fail_open(COPIED_ONLY)
        return {}
    live: dict[str, dict[str, tuple[int, int]]] = defaultdict(dict)
    for i, epoch in enumerate(epochs):
        counts, seen, gone = answers[3 * i : 3 * i + 3]
        for ip, (count, last, ip_epoch) in ips_of(counts, [*seen, *gone], epoch).items():
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
    # Newest first; IPs seen in the same millisecond by address, so the answer (and which
    # IPs make the cut) is the same from the live counters and from the copy.
    newest = sorted(last_seen, key=lambda ip: (-last_seen[ip].timestamp(), ip))
    newest = newest[:RECENT_IPS_SHOWN]
    return [{"ip": ip, "lastSeenAt": last_seen[ip], "requests": requests[ip]} for ip in newest]
