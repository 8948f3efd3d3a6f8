"""Where a key's counters and rate-limit windows live.

The shared Redis of `REDIS_URL` (one connection pool per process), or without it this
process's memory (`LocalStore`): limits and counts are then per process (the SQLite
demo). When Redis cannot be reached in 250 ms the request goes on (`fail_open`): no
limit is enforced and that request's counts are lost, with a warning in the log and
`sigsentry_redis_fail_open_total` counting it. A valid key is never refused because
Redis is down.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import secrets
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from core import failopen

logger = logging.getLogger("sigsentry.usage")


def fail_open(what: str) -> None:
    logger.warning("usage store unavailable: %s", what)
    failopen.gave_up("key_usage")


#: (key id, "hour" or "day", bucket start in epoch seconds as text)
Bucket = tuple[str, str, str]
#: an IP's (requests, last seen in ms, the IP's epoch)
IpCount = tuple[int, int, str]


@dataclass(frozen=True)
class PendingCopy:
    """What a copy stores: the buckets changed since the last copy, as (epoch, key id,
    granularity, start, {"r", "f"}), and for each key whose IPs changed, its IPs kept and
    pushed out, as {ip: IpCount}. `touched`: how many counters changed (a key's IPs: one)."""

    buckets: list[tuple[str, str, str, str, dict[str, int]]]
    ips: list[tuple[str, dict[str, IpCount]]]
    touched: int


class LocalStore:
    """The scripts' semantics in this process's memory, for runs without Redis: `limit`
    takes the window script's arguments, `count` the counting script's (`count_args`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: This process's counting lifetime: the `epoch` of the rows its counts are copied to.
        self.epoch = secrets.token_hex(16)
        self._windows: dict[str, list[int]] = {}
        #: Bucket -> {"r": requests, "f": refused}
        self._buckets: dict[Bucket, dict[str, int]] = {}
        #: key id -> {ip: (requests, last seen in ms, the IP's epoch)}: the kept IPs, and
        #: those pushed out of them whose counts wait for the copy
        self._ips: dict[str, dict[str, IpCount]] = {}
        self._gone: dict[str, dict[str, IpCount]] = {}
        #: what changed since the last copy: buckets, and (key id, "ip", "") for its IPs
        self._dirty: set[Bucket] = set()

    def limit(
        self, key_id: str, limit_n: int, limit_ms: int, peek: bool, now_ms: int
    ) -> tuple[int, int, int, int]:
        allowed = 1
        with self._lock:
            window = [t for t in self._windows.get(key_id, []) if t > now_ms - limit_ms]
            if not peek and len(window) < limit_n:
                window.append(max(now_ms, window[-1] if window else 0))
            elif not peek:
                allowed = 0
            self._windows[key_id] = window
            # as the script: when a place frees, also under a lowered limit
            reset_ms = (window[max(0, len(window) - limit_n)] if window else now_ms) + limit_ms
        return allowed, limit_n - len(window), reset_ms, now_ms

    def count(self, args: list) -> None:
        key_id, count_req, count_ref, ip = args[0], args[1], args[2], args[3]
        ip_count, ip_last, ips_kept, gone_kept = args[11], args[12], args[9], args[13]
        with self._lock:
            if count_req or count_ref:
                for granularity, start in (("hour", str(args[4])), ("day", str(args[6]))):
                    name = (key_id, granularity, start)
                    bucket = self._buckets.setdefault(name, {"r": 0, "f": 0})
                    bucket["r"] += count_req
                    bucket["f"] += count_ref
                    self._dirty.add(name)
            if ip_count and ip:
                seen = self._ips.setdefault(key_id, {})
                entry = seen.get(ip) or self._gone.get(key_id, {}).pop(ip, None)
                count, _last, ip_epoch = entry or (0, 0, secrets.token_hex(8))
                seen[ip] = (count + ip_count, ip_last, ip_epoch)
                for old in sorted(seen, key=lambda a: seen[a][1])[:-ips_kept]:
                    gone = self._gone.setdefault(key_id, {})
                    gone[old] = seen.pop(old)
                    while len(gone) > gone_kept:
                        del gone[min(gone, key=lambda a: gone[a][1])]
                self._dirty.add((key_id, "ip", ""))

    @contextlib.contextmanager
    def pending_copy(self) -> Iterator[PendingCopy]:
        """The counts changed since the last copy, for the block to store. Once taken they
        are the block's: counted again meanwhile, they wait for the next copy. If the block
        fails they wait for the next copy too (never pruned before it); if it succeeds, the
        pushed-out IPs it stored are forgotten, unless counted since."""
        with self._lock:
            dirty = list(self._dirty)
            self._dirty.clear()
            buckets = {d: dict(self._buckets.get(d, {})) for d in dirty}
            ips = {k: dict(v) for k, v in self._ips.items() if (k, "ip", "") in dirty}
            gone = {k: dict(self._gone.get(k, {})) for k in ips}
        try:
            yield PendingCopy(
                buckets=[(self.epoch, *d, buckets[d]) for d in dirty if d[1] != "ip"],
                ips=[(key_id, seen | gone[key_id]) for key_id, seen in ips.items()],
                touched=len(dirty),
            )
        except BaseException:
            with self._lock:
                self._dirty.update(dirty)
            raise
        with self._lock:
            for key_id, stored in gone.items():
                waiting = self._gone.get(key_id, {})
                for ip, value in stored.items():
                    if waiting.get(ip) == value:
                        del waiting[ip]

    def drop_copied(self, before: float) -> None:
        """Forget the buckets that start before `before` (epoch seconds) and were copied:
        their periods are closed, so they change no more (the process's memory stays
        bounded)."""
        with self._lock:
            for bucket in [b for b in self._buckets if b not in self._dirty]:
                if int(bucket[2]) < before:
                    del self._buckets[bucket]

    def bucket_counts(self, buckets: Iterable[Bucket]) -> dict[Bucket, dict[str, int]]:
        """The counts of those of `buckets` this process holds (copied or not): {"r", "f"}."""
        with self._lock:
            return {b: dict(self._buckets[b]) for b in buckets if b in self._buckets}

    def ip_counts(self, key_id: str) -> dict[str, IpCount]:
        """The key's IPs this process holds, kept and pushed out (not yet copied)."""
        with self._lock:
            return {**self._gone.get(key_id, {}), **self._ips.get(key_id, {})}

    def key_ids(self) -> set[str]:
        """Every key id with a counter, a rate-limit window or a pending copy here."""
        with self._lock:
            return (
                {bucket[0] for bucket in self._buckets}
                | set(self._ips)
                | set(self._windows)
                | {bucket[0] for bucket in self._dirty}
            )


@functools.cache
def local_store() -> LocalStore:
    return LocalStore()
