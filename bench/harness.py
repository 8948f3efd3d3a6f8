"""Django's whole request stack called the same way for every variant, and timed.

`Caller` calls the WSGI handler with a prebuilt environ, exactly as a WSGI server
does (body read, response closed); `measure` runs variants interleaved in chunks
and keeps each request's wall-clock time and each chunk's CPU time (this process
plus its PostgreSQL backend). Imported after `django.setup()` (auth_overhead.py).
"""

from __future__ import annotations

import io
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass, field

from django.core.handlers.wsgi import WSGIHandler
from django.db import connection
from django.test.utils import CaptureQueriesContext

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "7"))
REQUESTS_PER_ROUND = int(os.environ.get("BENCH_REQUESTS", "300"))
CHUNK = 30
WARMUP = 50


@dataclass
class Variant:
    name: str
    path: str
    authorization: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    environ: dict = field(init=False)

    def __post_init__(self) -> None:
        self.environ = build_environ(self.path, self.authorization, self.extra)


def build_environ(path: str, authorization: str | None, extra: dict[str, str]) -> dict:
    environ = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_ACCEPT": "application/json",
        "HTTP_USER_AGENT": "sigsentry-bench",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    if authorization is not None:
        environ["HTTP_AUTHORIZATION"] = authorization
    environ.update(extra)
    return environ


class Caller:
    """One WSGI request, exactly as a WSGI server makes it (body read, response closed)."""

    def __init__(self) -> None:
        self.handler = WSGIHandler()
        self.status = ""

    def _start_response(self, status, headers, exc_info=None):
        self.status = status

    def __call__(self, template: dict) -> int:
        environ = template.copy()
        environ["wsgi.input"] = io.BytesIO(b"")
        result = self.handler(environ, self._start_response)
        b"".join(result)
        result.close()  # request_finished, then the response's closers (lastUsedAt)
        return int(self.status[:3])


def bearer(token: str) -> str:
    return f"Bearer {token}"


def warm_up(call: Caller, variants: list[Variant]) -> None:
    for variant in variants:
        for _ in range(WARMUP):
            status = call(variant.environ)
            if status != 200:
                sys.exit(f"{variant.name}: warm-up answered {status}, expected 200")


@dataclass
class Samples:
    """What `measure` collects, per variant."""

    #: Wall-clock nanoseconds of each request, grouped by round.
    wall: dict[str, list[list[int]]]
    #: CPU nanoseconds per request of each chunk: this process plus its database backend.
    cpu: dict[str, list[float]]


def backend_pid() -> int | None:
    raw = connection.connection
    return None if raw is None or raw.closed else raw.info.backend_pid


def cpu_ns_of(pid: int) -> int:
    """Time the process has spent on a CPU (first field of /proc/PID/schedstat), in ns."""
    with open(f"/proc/{pid}/schedstat") as stat:
        return int(stat.read().split()[0])


def measure(call: Caller, variants: list[Variant], rounds: int) -> Samples:
    """Run the variants interleaved: each round, CHUNK requests of each in a shuffled order.

    Besides each request's wall-clock time, the CPU time of each chunk is
    recorded for this process and for the PostgreSQL backend serving it, so
    the cost can also be read without the time spent waiting for a wake-up.
    """
    samples = Samples({v.name: [] for v in variants}, {v.name: [] for v in variants})
    clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
    for round_no in range(rounds):
        order = variants[:]
        random.Random(round_no).shuffle(order)
        for variant in order:
            samples.wall[variant.name].append([])
        done = 0
        while done < REQUESTS_PER_ROUND:
            chunk = min(CHUNK, REQUESTS_PER_ROUND - done)
            for variant in order:
                bucket = samples.wall[variant.name][-1]
                environ = variant.environ
                pid = backend_pid()
                cpu_start, db_start = cpu_clock(), cpu_ns_of(pid) if pid else 0
                for _ in range(chunk):
                    start = clock()
                    status = call(environ)
                    bucket.append(clock() - start)
                    if status != 200:
                        sys.exit(f"{variant.name}: answered {status} during measurement")
                cpu_used = cpu_clock() - cpu_start
                if pid and backend_pid() == pid:  # no reconnection in between
                    cpu_used += cpu_ns_of(pid) - db_start
                    samples.cpu[variant.name].append(cpu_used / chunk)
            done += chunk
    return samples


def median_us(rounds: list[list[int]]) -> float:
    return statistics.median(ns for batch in rounds for ns in batch) / 1000


def round_medians_us(rounds: list[list[int]]) -> list[float]:
    """The median request of each round, in µs."""
    return [statistics.median(batch) / 1000 for batch in rounds]


def per_round_overhead(samples: Samples, baseline: str) -> dict[str, list[float]]:
    """Each variant's overhead in each round, in µs: its median minus the baseline's."""
    base = round_medians_us(samples.wall[baseline])
    return {
        name: [us - b for us, b in zip(round_medians_us(rounds), base, strict=True)]
        for name, rounds in samples.wall.items()
    }


def round_spread_us(rounds: list[list[int]]) -> tuple[float, float]:
    medians = round_medians_us(rounds)
    return min(medians), max(medians)


def queries_for(call: Caller, environ: dict) -> int:
    with CaptureQueriesContext(connection) as ctx:
        call(environ)
    return len(ctx.captured_queries)


def status_and_queries(call: Caller, environ: dict) -> tuple[int, int]:
    with CaptureQueriesContext(connection) as ctx:
        status = call(environ)
    return status, len(ctx.captured_queries)
