"""Key uses batched per process: counting adds no Redis round trip to a request."""

from __future__ import annotations

import atexit
import os
import threading
import time

import redis
from django.conf import settings

from apps.apikeys.gate import counters
from apps.apikeys.gate.store import fail_open
from core.sharedredis import redis_client


class UsageBatch:
    """Key uses not yet sent to Redis, per process: a background thread sends them every
    USAGE_BATCH_SECONDS in one pipelined round trip, so counting adds no Redis round trip
    to a request (a rate-limited key pays one, at its limit's step, for the window only).

    Counts reach Redis (and so every process's usage answer) within that interval. A
    process that exits normally sends what it holds (atexit); one killed hard loses at
    most one interval's counts, as does one whose send finds Redis unreachable (logged).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        #: (key id, hour start) -> [requests, refused, last seen, {ip: [count, last seen]}]
        self.pending: dict[tuple[str, int], list] = {}
        self.pid = 0

    def _start(self) -> None:
        """Under the lock: the sending thread, on first use in this process (or a fork)."""
        if self.pid != os.getpid():
            self.pid, self.pending = os.getpid(), {}
            threading.Thread(target=self._run, daemon=True, name="usage-batch").start()

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
            time.sleep(settings.USAGE_BATCH_SECONDS or 1)  # 0 since started: counted at once
            self.send()

    def send(self) -> None:
        with self.lock:
            pending, self.pending = self.pending, {}
        client = redis_client()
        if not pending or client is None:
            return
        pipe, script = counters.counting_pipeline(client)
        for (key_id, _hour), (requests, refused, last, ips) in pending.items():
            args = counters.count_args(
                key_id, ip=None, requests=requests, refused=refused, now=last, ip_count=0
            )
            script(args=args, client=pipe)
            for ip, (count, seen_at) in ips.items():
                args = counters.count_args(
                    key_id, ip=ip, requests=0, refused=0, now=seen_at, ip_count=count
                )
                script(args=args, client=pipe)
        try:
            pipe.execute()
        except redis.RedisError:
            fail_open(f"{len(pending)} key counters not counted")


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
        counters.add_counts(key_id, ip=ip, requests=requests, refused=refused)
