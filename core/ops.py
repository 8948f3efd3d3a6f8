"""Operations endpoints: `/healthz`, `/readyz` and `/metrics` (SPEC §4.14).

They are answered by `OperationsMiddleware`, the first middleware, before
anything else runs: no session, CSRF, authentication or throttling, no
`ALLOWED_HOSTS` check (a load balancer or Prometheus calls each instance by
its address) and no HTTPS redirect (health checks speak plain HTTP to the
instance). They are not API requests: not counted in the request metrics,
and gunicorn's access log leaves them out (gunicorn.conf.py).

* `/healthz`: 200 while the process serves; touches nothing.
* `/readyz`: 200 when the database, and Redis when `REDIS_URL` is set, each
  answer within `READINESS_TIMEOUT` seconds; else 503. The body names the
  failed dependency ("database", "redis"), never a host, port or credential.
  The database must hold every migration of this release: a release started
  before `migrate` ran reads columns that are not there yet, so it is kept out
  of the load balancer rather than answering its logins with 503s (found by the
  upgrade audit). Checked until it holds, then no more in this process. With
  hashed static files (production), the manifest `collectstatic` writes must have
  been there when the process started: without it every page is a 500 (found by a
  configuration audit), so the instance is not ready ("static").
* `/metrics`: Prometheus text, only with `Authorization: Bearer
  <METRICS_TOKEN>` (compared in constant time); 401 without it or with a
  wrong one, 404 when `METRICS_TOKEN` is unset.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.contrib.staticfiles.storage import ManifestFilesMixin, staticfiles_storage
from django.core.cache import cache
from django.db import connections
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse

from core import metrics

logger = logging.getLogger("core.ops")

HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
METRICS_PATH = "/metrics"
PATHS = frozenset({HEALTH_PATH, READY_PATH, METRICS_PATH})
#: Seconds each dependency has to answer a readiness check.
READINESS_TIMEOUT = 1.0


def _response(status: int, body: bytes, content_type: str) -> HttpResponse:
    response = HttpResponse(body, status=status, content_type=content_type)
    response["Cache-Control"] = "no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _json(status: int, body: dict) -> HttpResponse:
    return _response(status, json.dumps(body).encode(), "application/json")


class MigrationsNotApplied(Exception):
    """The database lacks migrations this release's code relies on."""


#: Set once the database held every migration of this release (they cannot go missing
#: while this code runs, short of an operator migrating backwards).
_schema_current = threading.Event()


def _check_database() -> None:
    """A fresh connection and a read of a table: what the next request would need after an
    outage. A table, not `SELECT 1`: that also answers on a database without the schema
    (migrations not run, a damaged SQLite file) where every request fails. Then, until it
    holds once, that every migration of this release is applied."""
    connection = connections["default"]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM django_migrations LIMIT 1")
            cursor.fetchone()
        if not _schema_current.is_set():
            executor = MigrationExecutor(connection)
            if executor.migration_plan(executor.loader.graph.leaf_nodes()):
                raise MigrationsNotApplied()
            _schema_current.set()
    finally:
        connection.close()


#: A file every page links to (templates/base.html).
STATIC_PROBE = "css/app.css"


def static_files_collected() -> bool:
    """Whether pages can name their hashed static files: the manifest read at start lacks
    them when `collectstatic` had not run."""
    try:
        staticfiles_storage.url(STATIC_PROBE)
    except ValueError:  # "Missing staticfiles manifest entry" (Django's manifest_strict)
        logger.warning("readiness check failed: static files are not collected")
        return False
    return True


def _check_redis() -> None:
    cache.get("readyz")  # a miss is an answer; an unreachable server raises


class _Check:
    """One run of a dependency's check in its own thread, and what it found."""

    def __init__(self, name: str, check: Callable[[], None]) -> None:
        self.outcome: list[bool] = []
        self.started = time.monotonic()
        self.thread = threading.Thread(
            target=self._run, args=(check,), name=f"readyz-{name}", daemon=True
        )

    def _run(self, check: Callable[[], None]) -> None:
        try:
            check()
            self.outcome.append(True)
        except Exception as exc:
            logger.warning("readiness check failed: %s", type(exc).__name__)
            self.outcome.append(False)


#: Dependency name → its latest check in this process (perhaps still running).
_checks: dict[str, _Check] = {}
_checks_lock = threading.Lock()


def _answers_in_time(name: str, check: Callable[[], None], timeout: float) -> bool:
    """Run `check` in its own thread and wait at most `timeout` seconds for it.

    A thread, because a half-open TCP connection or a slow connect would
    otherwise hold the probe for the driver's own timeouts (3 s connect
    for PostgreSQL). A check still running after the deadline is abandoned;
    the driver's timeouts end it. While it runs, later probes wait on it rather
    than start another: a database that accepts connections but answers no query
    (a lock held on the table read, a pool with no server connection free) ends
    no check, and each probe of a load balancer left a thread and a database
    connection behind, 15 after 15 probes (found by the observability audit), until
    the probes alone held every connection the database allows.
    """
    with _checks_lock:
        running = _checks.get(name)
        if running is None or not running.thread.is_alive():
            running = _checks[name] = _Check(name, check)
            running.thread.start()
        elif time.monotonic() - running.started >= timeout:
            logger.warning("readiness check failed: %s has not answered an earlier check", name)
    running.thread.join(timeout)
    return running.outcome == [True]


def readiness() -> dict[str, bool]:
    """Dependency name → answered within READINESS_TIMEOUT."""
    checks = {"database": _check_database}
    if settings.REDIS_URL:
        checks["redis"] = _check_redis
    return {
        name: _answers_in_time(name, check, READINESS_TIMEOUT) for name, check in checks.items()
    }


def healthz(request: HttpRequest) -> HttpResponse:
    return _json(200, {"status": "ok"})


def readyz(request: HttpRequest) -> HttpResponse:
    results = readiness()
    if isinstance(staticfiles_storage, ManifestFilesMixin):  # production: hashed names
        results["static"] = static_files_collected()
    failed = [name for name, ok in results.items() if not ok]
    body = {
        "status": "unavailable" if failed else "ok",
        "checks": {name: "ok" if ok else "unavailable" for name, ok in results.items()},
    }
    if failed:
        body["failed"] = failed
    response = _json(503 if failed else 200, body)
    if failed:
        response["Retry-After"] = "5"
    return response


def token_matches(header: str | None, token: str) -> bool:
    """`Authorization: Bearer <token>`, compared in constant time (hmac.compare_digest)."""
    scheme, _, presented = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        presented.strip().encode(), token.encode()
    )


def metrics_view(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if not token:
        return _response(404, b"Not found.\n", "text/plain; charset=utf-8")
    if not token_matches(request.META.get("HTTP_AUTHORIZATION"), token):
        response = _response(401, b"A metrics token is required.\n", "text/plain; charset=utf-8")
        response["WWW-Authenticate"] = 'Bearer realm="sigsentry-metrics"'
        return response
    return _response(200, metrics.render(), metrics.CONTENT_TYPE)


_VIEWS = {HEALTH_PATH: healthz, READY_PATH: readyz, METRICS_PATH: metrics_view}


class OperationsMiddleware:
    """Answers the three operations paths before any other middleware (see the module doc)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        view = _VIEWS.get(request.path_info)
        if view is None:
            return self.get_response(request)
        if request.method not in ("GET", "HEAD"):
            response = _response(405, b"Method not allowed.\n", "text/plain; charset=utf-8")
            response["Allow"] = "GET, HEAD"
            return response
        return view(request)


class SkipOperationsPaths(logging.Filter):
    """Leaves Django's per-response log lines for the operations paths out (a 503 from
    /readyz every few seconds is the probe's job, not an error of the request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = getattr(record, "request", None)
        return getattr(request, "path_info", None) not in PATHS
