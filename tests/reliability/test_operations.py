"""Operations under real gunicorn: probes, multi-process metrics, graceful stop, start-up refusal.

SPEC §4.14. The in-process details (labels, token checks, counters) are in
tests/test_operations.py; here is what only a real server shows: the
readiness of a server whose database or Redis is really unreachable, counts
added up across worker processes, the access log, SIGTERM with a request in
flight, and a server that refuses to start without its settings.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

from apps.apikeys.keyformat import KeyKind, generate
from tests.factories import make_key
from tests.reliability.helpers import bearer, call, closed_port, until_ready
from tests.servers import AT_ALL, GunicornServer

pytestmark = pytest.mark.slow

TOKEN = secrets.token_urlsafe(32)
REQUESTS = 24


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def unreachable_database_url() -> str:
    if connection.vendor == "postgresql":
        return f"postgres://root@127.0.0.1:{closed_port()}/sigsentry"
    return "sqlite:////nonexistent-directory/sigsentry.sqlite3"


@pytest.fixture(scope="module")
def metrics_server(django_db_setup, django_db_blocker, tmp_path_factory):
    access_log = tmp_path_factory.mktemp("access") / "access.log"
    with django_db_blocker.unblock():
        server = GunicornServer(
            env={"METRICS_TOKEN": TOKEN, "GUNICORN_CMD_ARGS": f"--access-logfile {access_log}"}
        )
    server.access_log = access_log
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def server(metrics_server, transactional_db):
    return metrics_server


def test_a_healthy_server_is_live_and_ready(server):
    health = call(server.url, "GET", "/healthz")
    assert (health.status, health.json) == (200, {"status": "ok"})
    ready = call(server.url, "GET", "/readyz")
    assert ready.status == 200
    expected = {"database": "ok"} | ({"redis": "ok"} if os.environ.get("REDIS_URL") else {})
    assert ready.json == {"status": "ok", "checks": expected}


def test_a_server_whose_database_is_unreachable_is_live_but_not_ready(start_server):
    server = start_server(env={"DATABASE_URL": unreachable_database_url()})
    assert call(server.url, "GET", "/healthz").status == 200
    started = time.monotonic()
    ready = call(server.url, "GET", "/readyz")
    assert time.monotonic() - started < 3
    assert ready.status == 503
    assert ready.json["failed"] == ["database"]
    assert ready.json["checks"]["database"] == "unavailable"
    for secret in (b"127.0.0.1", b"root", b"nonexistent", b"postgres", b"sqlite"):
        assert secret not in ready.body
    # And the API fails closed, as ever.
    assert call(server.url, "GET", "/v1/me", headers=bearer(generate(KeyKind.SECRET))).status == 503


def test_a_scrape_while_the_database_is_unreachable_says_the_worker_figures_are_missing(
    start_server,
):
    """Found by an observability audit: the queue and worker series just disappeared from
    the scrape (an alert on a queue's depth went quiet), with only a WARNING line."""
    server = start_server(env={"METRICS_TOKEN": TOKEN, "DATABASE_URL": unreachable_database_url()})

    scrape = call(server.url, "GET", "/metrics", headers=bearer(TOKEN))

    assert scrape.status == 200
    figures = samples(scrape.body.decode())
    assert figures[("sigsentry_worker_figures_readable", ())] == 0
    assert not any(name.startswith("sigsentry_worker_queue") for name, _ in figures)


def test_a_server_whose_database_has_no_schema_is_not_ready(start_server, tmp_path):
    empty = tmp_path / "empty.sqlite3"
    empty.touch()  # answers `SELECT 1`, but holds none of the tables a request reads
    # (DATABASE_POOLER names a PostgreSQL deployment: not this one's)
    server = start_server(env={"DATABASE_URL": f"sqlite:///{empty}", "DATABASE_POOLER": ""})

    ready = call(server.url, "GET", "/readyz")

    assert ready.status == 503
    assert ready.json["failed"] == ["database"]


def test_a_server_whose_redis_is_unreachable_is_not_ready(transactional_db, start_server):
    port = closed_port()
    server = start_server(env={"REDIS_URL": f"redis://127.0.0.1:{port}/0"})
    # A new process's first database check also loads the migration graph: on a loaded host
    # (CI, two suites on two cores) that outlasts the probe's 1 s, and a probe asks again
    # (the check goes on and holds for the next). Each gunicorn process does it once.
    ready = call(server.url, "GET", "/readyz")
    deadline = time.monotonic() + AT_ALL
    while ready.json["checks"]["database"] != "ok":
        assert time.monotonic() < deadline, f"the database never answered: {ready.json}"
        time.sleep(0.5)
        ready = call(server.url, "GET", "/readyz")
    assert ready.status == 503
    assert ready.json == {
        "status": "unavailable",
        "checks": {"database": "ok", "redis": "unavailable"},
        "failed": ["redis"],
    }
    assert str(port).encode() not in ready.body


def test_a_scrape_while_the_database_does_not_answer_waits_for_it_once(start_server):
    """A port that takes connections and never answers: each database-backed figure would
    wait out the 3 s connect timeout (four of them: longer than Prometheus's 10 s scrape
    timeout). The first failure leaves the rest out."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # never accepted: the handshake completes, nothing is ever said
    try:
        port = silent.getsockname()[1]
        server = start_server(
            env={"METRICS_TOKEN": TOKEN, "DATABASE_URL": f"postgres://root@127.0.0.1:{port}/x"}
        )
        started = time.monotonic()
        scrape = call(server.url, "GET", "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        took = time.monotonic() - started
    finally:
        silent.close()

    assert scrape.status == 200
    assert took < 6, took
    assert b"sigsentry_http_requests_total" in scrape.body


def test_metrics_need_the_token(server):
    assert call(server.url, "GET", "/metrics").status == 401
    assert call(server.url, "GET", "/metrics", headers=bearer("x" * 43)).status == 401
    assert call(server.url, "GET", "/metrics", headers=bearer(TOKEN)).status == 200


def test_metrics_add_up_every_worker_process(server):
    def scrape():
        reply = call(server.url, "GET", "/metrics", headers=bearer(TOKEN))
        assert reply.status == 200
        return samples(reply.body.decode())

    labels = (("method", "GET"), ("route", "v1/me"), ("status", "401"))
    before = scrape().get(("sigsentry_http_requests_total", labels), 0)
    # Concurrent requests on fresh connections: both sync workers serve some of them.
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: call(server.url, "GET", "/v1/me").status, range(24)))
    assert statuses == [401] * REQUESTS
    # Whichever worker answers the scrape, it reports every worker's count.
    for _ in range(4):
        assert scrape()[("sigsentry_http_requests_total", labels)] - before == REQUESTS


def test_metrics_count_authentication_outcomes_and_show_no_key(server, project, owner):
    _key, plaintext = make_key(KeyKind.SECRET, project=project, actor=owner)
    garbage = generate(KeyKind.SECRET)[:-1] + "0"
    assert call(server.url, "GET", "/v1/me", headers=bearer(plaintext)).status == 200
    assert call(server.url, "GET", "/v1/me", headers=bearer(garbage)).code == "KEY_INVALID"
    text = call(server.url, "GET", "/metrics", headers=bearer(TOKEN)).body.decode()
    outcomes = {
        labels: count
        for (name, labels), count in samples(text).items()
        if name == "sigsentry_auth_decisions_total"
    }
    assert outcomes[(("outcome", "KEY_INVALID"),)] >= 1
    assert outcomes[(("outcome", "ok"),)] >= 1
    for secret in (plaintext, plaintext[:18], garbage, garbage[:18]):
        assert secret not in text


def test_probes_and_scrapes_stay_out_of_the_access_log(server):
    for path in ("/healthz", "/readyz"):
        assert until_ready(server.url, path).status == 200
    call(server.url, "GET", "/metrics", headers=bearer(TOKEN))
    assert call(server.url, "GET", "/v1/me").status == 401
    deadline = time.monotonic() + 5
    while "/v1/me" not in server.access_log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = server.access_log.read_text()
    assert "/v1/me" in log
    for path in ("/healthz", "/readyz", "/metrics"):
        assert path not in log


def test_sigterm_lets_the_request_in_flight_finish(transactional_db, start_server, tmp_path):
    in_a_worker = tmp_path / "slow-started"
    server = start_server(
        env={
            "DJANGO_SETTINGS_MODULE": "tests.reliability.slow_settings",
            "SLOW_STARTED_FILE": str(in_a_worker),
        }
    )
    replies = []
    request = threading.Thread(target=lambda: replies.append(call(server.url, "GET", "/slow")))
    request.start()
    # In a worker now: the view says so. A fixed 0.5 s proved nothing on a loaded host: the
    # SIGTERM could come before the request reached a worker, failing a right server.
    deadline = time.monotonic() + AT_ALL
    while not in_a_worker.exists():
        assert time.monotonic() < deadline, "the request never reached a worker"
        time.sleep(0.05)
    server.process.send_signal(signal.SIGTERM)
    request.join(timeout=10)
    assert [(reply.status, reply.body) for reply in replies] == [(200, b"finished")]
    assert server.process.wait(timeout=10) == 0
    with pytest.raises(OSError):  # and it is gone: nothing listens any more
        call(server.url, "GET", "/healthz", timeout=2)


def test_start_up_without_a_secret_key_fails_naming_the_variable(db):
    server = GunicornServer(
        env={"DJANGO_SETTINGS_MODULE": "sigsentry.settings", "SECRET_KEY": "", "DEBUG": "false"}
    )
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="gunicorn exited"):
        server.start()  # the master stops when its workers cannot boot, rather than retrying
    assert time.monotonic() - started < 20
    assert "ImproperlyConfigured: SECRET_KEY is not set" in server.log_path.read_text()


def test_no_worker_at_all_refuses_to_start(db):
    """Found by a configuration audit: `--workers 0` listened and every request hung."""
    server = GunicornServer(workers=0)
    with pytest.raises(RuntimeError, match="gunicorn exited"):
        server.start()
    assert "must be 1 or more" in server.log_path.read_text()


def test_preload_with_metrics_on_refuses_to_start_without_the_metrics_directory(db):
    """Found by the observability audit: a preloaded application had picked in-process
    counting before any hook could name the directory, and every scrape read it empty."""
    server = GunicornServer(env={"METRICS_TOKEN": TOKEN, "GUNICORN_CMD_ARGS": "--preload"})
    server.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with pytest.raises(RuntimeError, match="gunicorn exited"):
        server.start()
    assert "--preload needs PROMETHEUS_MULTIPROC_DIR" in server.log_path.read_text()


def test_preload_with_the_metrics_directory_adds_up_every_worker(transactional_db, tmp_path):
    env = {
        "METRICS_TOKEN": TOKEN,
        "GUNICORN_CMD_ARGS": "--preload",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
    }
    server = GunicornServer(env=env).start()
    try:
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda _: call(server.url, "GET", "/v1/me").status, range(24)))
        reply = call(server.url, "GET", "/metrics", headers=bearer(TOKEN))
    finally:
        server.stop()
    assert statuses == [401] * REQUESTS
    labels = (("method", "GET"), ("route", "v1/me"), ("status", "401"))
    assert samples(reply.body.decode())[("sigsentry_http_requests_total", labels)] == REQUESTS
