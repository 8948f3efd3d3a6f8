"""Prometheus metrics: what is counted, and the small API the rest of the code records through.

Recording is a no-op while `METRICS_TOKEN` is unset (`/metrics` is off then,
so nothing would read the counts). Labels are bounded sets chosen here or
by the code (route templates, HTTP methods and statuses, SPEC §3 error codes,
throttle scopes, queue names): never a key, prefix, user, email or IP
address, which would be secrets or unbounded.

Under gunicorn every worker is its own process, so the counts live in
prometheus-client's multiprocess mode: `PROMETHEUS_MULTIPROC_DIR` names a
directory where each process writes its values to memory-mapped files, and a
scrape, served by whichever worker receives it, adds up every process's files
(gunicorn.conf.py sets the directory up at start and marks exited workers
dead). Without the variable (tests, `manage.py`), the values are this
process's own.

Queue figures (depth, age of the oldest undelivered item) are not counted but
read when scraped: the app that owns a queue registers a probe at start-up
with `register_queue_probe`. The worker's failures are counted in the database
(`core.counters`: the worker is not the process a scrape reaches) and read when
scraped too. When they cannot be read (the database unreachable, a table locked past
SCRAPE_QUERY_TIMEOUT_MS) their series are left out, and `sigsentry_worker_figures_readable`
says so (0), so an alert on a queue does not go quiet unnoticed.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, InterfaceError, connection, transaction
from django.db.models import Count, Min, QuerySet
from django.utils import timezone
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

logger = logging.getLogger("core.metrics")

#: Exposition format of `render()`.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: The metric objects register here; a multiprocess scrape reads the files instead.
LOCAL_REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

REQUESTS = Counter(
    "sigsentry_http_requests",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
    registry=LOCAL_REGISTRY,
)
LATENCY = Histogram(
    "sigsentry_http_request_duration_seconds",
    "Time from the request entering Django to the response leaving it, by route template, "
    "method and status.",
    ["route", "method", "status"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=LOCAL_REGISTRY,
)
AUTH_DECISIONS = Counter(
    "sigsentry_auth_decisions",
    "Authentication decisions on /v1, by outcome: ok or the SPEC error code.",
    ["outcome"],
    registry=LOCAL_REGISTRY,
)
RATE_LIMITED = Counter(
    "sigsentry_rate_limited",
    "Requests refused as RATE_LIMITED (throttles and per-key limits).",
    registry=LOCAL_REGISTRY,
)
REDIS_FAIL_OPEN = Counter(
    "sigsentry_redis_fail_open",
    "Redis steps that gave up (fail open), by scope: the shared cache (Redis) did not answer in"
    " time; the steps skipped after it, in the request or the process's rest, are not counted.",
    ["scope"],
    registry=LOCAL_REGISTRY,
)
#: Counted in the database by the worker (`core.counters`), read at scrape time.
WORKER_COUNTERS = {
    "delivery_failures": "Webhook delivery attempts that failed (each retry counts).",
    "email_failures": "Email sends that failed (each retry counts, the account emails' too).",
    "redis_fail_open": "Redis steps that gave up (fail open) in the worker and the other "
    "project commands (flush_usage, ...): the web's are sigsentry_redis_fail_open_total.",
}


def enabled() -> bool:
    return bool(settings.METRICS_TOKEN)


#: The labelled series met so far in this process, so a request skips `labels()` (it
#: validates and looks the labels up again under a lock: measured 4 µs of 6).
_request_series: dict[tuple[str, str, int], tuple] = {}
_auth_series: dict[str, object] = {}


def record_request(route: str, method: str, status: int, seconds: float) -> None:
    """One answered request. `route` is the URL pattern, never the path itself."""
    if not enabled():
        return
    series = _request_series.get((route, method, status))
    if series is None:
        label = method if method in HTTP_METHODS else "other"
        series = (
            REQUESTS.labels(route, label, str(status)),
            LATENCY.labels(route, label, str(status)),
        )
        if label == method:  # a made-up method is not kept: the cache stays bounded
            _request_series[route, method, status] = series
    series[0].inc()
    series[1].observe(seconds)


def record_auth_decision(outcome: str) -> None:
    """`outcome` is "ok" or the SPEC §3 code of the refusal (KEY_INVALID, KEY_REVOKED, ...)."""
    if not enabled():
        return
    series = _auth_series.get(outcome)
    if series is None:
        series = _auth_series[outcome] = AUTH_DECISIONS.labels(outcome)
    series.inc()


def record_rate_limited() -> None:
    if enabled():
        RATE_LIMITED.inc()


def record_redis_fail_open(scope: str) -> None:
    """The shared cache was unreachable and the step `scope` was skipped (fail open)."""
    if enabled():
        REDIS_FAIL_OPEN.labels(scope).inc()


def record_delivery_failure() -> None:
    """A failed webhook attempt, counted in the database whether or not /metrics is on (the
    worker may run without METRICS_TOKEN): call it in the transaction that records it."""
    _count_in_database("delivery_failures")


def record_email_failure() -> None:
    _count_in_database("email_failures")


def record_worker_redis_fail_open(amount: int = 1) -> bool:
    """`amount` Redis steps gave up in a command's process (`core.failopen.counted_in_database`,
    which calls this out of the transactions of the steps). Never raising: a database that
    fails too must not end the task or command that Redis let go on. Whether they were counted."""
    try:
        with transaction.atomic():
            _count_in_database("redis_fail_open", amount)
    except (DatabaseError, InterfaceError):
        logger.warning("Redis give-up not counted: database unavailable")
        return False
    return True


def _count_in_database(name: str, amount: int = 1) -> None:
    from core import counters  # a model: importable once the app registry is ready

    counters.add(name, amount)


# ------------------------------------------------------------------------ queue probes


@dataclass(frozen=True)
class QueueState:
    """What a queue probe reports: items waiting, and how old the oldest is (None if empty)."""

    depth: int
    oldest_age_seconds: float | None


def queue_state_of(waiting: QuerySet, created_field: str) -> QueueState:
    """A queue probe's answer for the rows `waiting`, in one query: how many, and the age
    of the oldest by `created_field`."""
    found = waiting.aggregate(depth=Count("pk"), oldest=Min(created_field))
    oldest = found["oldest"]
    age = None if oldest is None else max(0.0, (timezone.now() - oldest).total_seconds())
    return QueueState(found["depth"], age)


_queue_probes: dict[str, Callable[[], QueueState]] = {}
_queue_probes_lock = threading.Lock()


def register_queue_probe(queue: str, probe: Callable[[], QueueState]) -> None:
    """Read `probe()` on every scrape as the depth and oldest age of `queue`.

    Called once at start-up by the app that owns the queue (its
    `AppConfig.ready`); registering the same name again replaces the probe. The
    probe runs in the scraping process, typically one indexed query.
    """
    with _queue_probes_lock:
        _queue_probes[queue] = probe


def unregister_queue_probe(queue: str) -> None:
    with _queue_probes_lock:
        _queue_probes.pop(queue, None)


#: How long one of a scrape's database reads may take (PostgreSQL's `statement_timeout`
#: and `lock_timeout`, for the scrape's own transaction only).
SCRAPE_QUERY_TIMEOUT_MS = 2000


@contextmanager
def _bounded_reads() -> Iterator[None]:
    """The scrape's reads in one transaction whose statements give up after
    SCRAPE_QUERY_TIMEOUT_MS on PostgreSQL (`SET LOCAL`: nothing outlives the transaction,
    as PgBouncer's transaction pooling needs). SQLite has no such timeout."""
    if connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('statement_timeout', %s, true),"
                " set_config('lock_timeout', %s, true)",
                [str(SCRAPE_QUERY_TIMEOUT_MS), str(SCRAPE_QUERY_TIMEOUT_MS)],
            )
        yield


class DatabaseFiguresCollector(Collector):
    """The registered queue probes' figures and the worker's counters, read from the
    database at scrape time. A probe that fails is left out; once one fails because the
    database cannot be reached, the rest are not tried: each would wait out the connect
    timeout again, and a scrape during an outage would outlast Prometheus's (10 s). A read
    that waits on a lock or runs long gives up after SCRAPE_QUERY_TIMEOUT_MS, the same way:
    a scrape while a table was locked held its gunicorn worker for as long as the lock,
    19 s of a 20 s lock, past Prometheus's timeout (found by the observability audit)."""

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "sigsentry_worker_queue_depth", "Items waiting in a worker queue.", labels=["queue"]
        )
        age = GaugeMetricFamily(
            "sigsentry_worker_oldest_undelivered_age_seconds",
            "Age of the oldest item still waiting in a worker queue (0 when empty).",
            labels=["queue"],
        )
        readable = GaugeMetricFamily(
            "sigsentry_worker_figures_readable",
            "1 when this scrape read every worker figure (queues, worker counters) from the "
            "database, 0 when some are left out (the database unreachable or slow, a read "
            "that failed): their series are missing from this scrape then.",
        )
        probes_read: list[bool] = []
        try:
            stored = self._read(depth, age, probes_read)
        except (DatabaseError, InterfaceError):  # the transaction could not begin or end
            logger.warning("worker figures unreadable: database unavailable")
            stored = None
        readable.add_metric([], 1 if stored is not None and all(probes_read) else 0)
        yield readable
        yield depth
        yield age
        if stored is None:
            return
        for name, documentation in WORKER_COUNTERS.items():
            yield CounterMetricFamily(
                f"sigsentry_worker_{name}", documentation, value=stored.get(name, 0)
            )

    @staticmethod
    def _read(
        depth: GaugeMetricFamily, age: GaugeMetricFamily, probes_read: list[bool]
    ) -> dict[str, int] | None:
        """Adds each probe's figures to `depth` and `age`, and to `probes_read` whether
        each probe answered; the worker's counters, or None when they could not be read."""
        from core import counters  # a model: importable once the app registry is ready

        with _queue_probes_lock:
            probes = sorted(_queue_probes.items())
        with _bounded_reads():
            for queue, probe in probes:
                try:
                    state = probe()
                except (DatabaseError, InterfaceError):
                    logger.warning("queue probe %s failed: database unavailable or slow", queue)
                    return None
                except Exception:  # a scrape must still answer when one probe cannot
                    logger.warning("queue probe %s failed", queue, exc_info=True)
                    probes_read.append(False)
                    continue
                probes_read.append(True)
                depth.add_metric([queue], state.depth)
                age.add_metric([queue], state.oldest_age_seconds or 0.0)
            try:
                return counters.values()
            except Exception:
                logger.warning("worker counters unreadable", exc_info=True)
                return None


_QUEUE_REGISTRY = CollectorRegistry(auto_describe=False)
_QUEUE_REGISTRY.register(DatabaseFiguresCollector())


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def render() -> bytes:
    """The exposition text: every process's counts (multiprocess mode) or this process's."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = LOCAL_REGISTRY
    return generate_latest(registry) + generate_latest(_QUEUE_REGISTRY)
