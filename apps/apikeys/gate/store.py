"""Where a key's counters and rate-limit windows live.

The shared Redis of `REDIS_URL` (one connection pool per process), or without it this
process's memory (`LocalStore`): limits and counts are then per process (the SQLite
demo). When Redis cannot be reached in 250 ms the request goes on (`fail_open`): no
limit is enforced and that request's counts are lost, with a warning in the log and
`sigsentry_redis_fail_open_total` counting it. A valid key is never refused because
Redis is down.
"""

from __future__ import annotations

import functools
import logging
import secrets
import threading

from core import failopen

logger = logging.getLogger("sigsentry.usage")


def fail_open(what: str) -> None:
    logger.warning("usage store unavailable: %s", what)
    failopen.gave_up("key_usage")


class LocalStore:
    """The scripts' semantics in this process's memory, for runs without Redis: `limit`
    takes the window script's arguments, `count` the counting script's (`count_args`)."""

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
        self, key_id: str, limit_n: int, limit_ms: int, peek: bool, now_ms: int
    ) -> tuple[int, int, int, int]:
        allowed = 1
        with self.lock:
            window = [t for t in self.windows.get(key_id, []) if t > now_ms - limit_ms]
            if not peek and len(window) < limit_n:
                window.append(max(now_ms, window[-1] if window else 0))
            elif not peek:
                allowed = 0
            self.windows[key_id] = window
            # as the script: when a place frees, also under a lowered limit
            reset_ms = (window[max(0, len(window) - limit_n)] if window else now_ms) + limit_ms
        return allowed, limit_n - len(window), reset_ms, now_ms

    def count(self, args: list) -> None:
        key_id, count_req, count_ref, ip = args[0], args[1], args[2], args[3]
        ip_count, ip_last, ips_kept, gone_kept = args[11], args[12], args[9], args[13]
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
                for old in sorted(seen, key=lambda a: seen[a][1])[:-ips_kept]:
                    gone = self.gone.setdefault(key_id, {})
                    gone[old] = seen.pop(old)
                    while len(gone) > gone_kept:
                        del gone[min(gone, key=lambda a: gone[a][1])]
                self.dirty.add((key_id, "ip", ""))


@functools.cache
def local_store() -> LocalStore:
    return LocalStore()
