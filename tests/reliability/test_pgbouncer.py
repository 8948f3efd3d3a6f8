"""Behind PgBouncer in transaction mode: outages of PostgreSQL and of PgBouncer itself, under load.

A private PgBouncer (tests/pgbouncer.py, `.ci/pgbouncer`) reaches PostgreSQL
through a TCP proxy the test can cut, and a gunicorn server (2 workers, default
settings: no `DATABASE_POOLER`) reaches PgBouncer. While a client thread keeps
sending requests with a valid and a revoked key, PostgreSQL goes away and
comes back, then PgBouncer is restarted. Every answer must be the right
decision or a 503 (never a 401 for the valid key, a 200 for the revoked one,
or a 500), the outage must show as 503, and service must come back by itself.

CI installs PgBouncer; elsewhere these tests skip without it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import psycopg
import pytest
from django.db import connection

from apps.apikeys.keyformat import KeyKind
from apps.apikeys.services import revoke_key
from tests import pgbouncer
from tests.factories import make_key
from tests.reliability.helpers import TcpProxy, bearer, call, until_ready

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PgBouncer fronts PostgreSQL"),
    pytest.mark.skipif(
        not pgbouncer.available() and os.environ.get("CI") != "true",
        reason="needs Debian's pgbouncer (apt-get install pgbouncer); CI installs it",
    ),
]


@dataclass
class Load:
    """Requests in a loop from one thread (bounded in time), each answer recorded."""

    url: str
    valid: str
    revoked: str
    answers: list[tuple[str, int, str | None]] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def run(self, limit_seconds: float = 60) -> None:
        deadline = time.monotonic() + limit_seconds
        while not self.stopping.is_set() and time.monotonic() < deadline:
            for which, key in (("valid", self.valid), ("revoked", self.revoked)):
                reply = call(self.url, "GET", "/v1/me", headers=bearer(key), timeout=15)
                self.answers.append((which, reply.status, reply.code))
            time.sleep(0.02)

    def __enter__(self) -> Load:
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.thread.join(timeout=30)

    def tally(self) -> Counter:
        return Counter(self.answers)


def assert_only_right_decisions_or_503(load: Load) -> None:
    allowed = {
        ("valid", 200, None),
        ("valid", 503, "SERVICE_UNAVAILABLE"),
        ("revoked", 401, "KEY_REVOKED"),
        ("revoked", 503, "SERVICE_UNAVAILABLE"),
    }
    tally = load.tally()
    assert set(tally) <= allowed, tally
    assert tally[("valid", 200, None)] and tally[("revoked", 401, "KEY_REVOKED")], tally


def wait_for(url: str, key: str, status: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        reply = call(url, "GET", "/v1/me", headers=bearer(key), timeout=15)
        if reply.status == status:
            return
        assert reply.status in (200, 503), (reply.status, reply.body[:200])
        assert time.monotonic() < deadline, f"no {status} within {timeout} s"
        time.sleep(0.1)


@pytest.fixture
def keys(transactional_db, project, owner):
    _valid, valid = make_key(KeyKind.SECRET, project=project)
    revoked, revoked_plaintext = make_key(KeyKind.SECRET, project=project)
    revoke_key(actor=owner, api_key=revoked)
    return valid, revoked_plaintext


@pytest.fixture
def rig(keys, start_server):
    """PostgreSQL ← TCP proxy ← PgBouncer ← gunicorn; every part stopped after the test."""
    settings = connection.settings_dict
    proxy = TcpProxy((settings.get("HOST") or "127.0.0.1", int(settings.get("PORT") or 5432)))
    proxy.start()
    bouncer = pgbouncer.PgBouncer(("127.0.0.1", proxy.port)).start()
    try:
        server = start_server(
            env={
                "DATABASE_URL": bouncer.database_url(
                    settings.get("USER") or "root", settings["NAME"]
                ),
                "DATABASE_POOLER": "",  # SPEC §4.14: unchanged, the default settings
            }
        )
        yield server, proxy, bouncer, keys
    finally:
        bouncer.close()  # before the test database is dropped: it holds server connections
        proxy.stop()


def test_postgresql_restart_behind_pgbouncer_is_503_then_recovers(rig):
    server, proxy, _bouncer, (valid, revoked) = rig
    wait_for(server.url, valid, 200)
    with Load(server.url, valid, revoked) as load:
        time.sleep(0.5)
        proxy.stop()  # PostgreSQL is gone for everyone behind PgBouncer
        wait_for(server.url, valid, 503)
        assert call(server.url, "GET", "/readyz").json["failed"] == ["database"]
        time.sleep(0.5)
        proxy.start()
        wait_for(server.url, valid, 200)
        time.sleep(0.5)
    # PgBouncer may hold a request while PostgreSQL is gone and run it when it is back, so
    # the load need not see a 503 itself (wait_for did): it must only never see a wrong one.
    assert_only_right_decisions_or_503(load)
    assert load.tally()[("valid", 200, None)], load.tally()
    assert until_ready(server.url).status == 200


def test_a_query_that_never_ends_is_a_503_not_a_killed_worker(rig):
    """A database that accepts the query and never answers (a lock held, a stalled server)
    acknowledges every packet, so no TCP timeout fires: without PgBouncer's query_timeout
    the request waited for gunicorn to kill its worker at 30 s (an empty reply or a 500)."""
    server, _proxy, _bouncer, (valid, _revoked) = rig
    wait_for(server.url, valid, 200)
    settings = connection.settings_dict
    holder = psycopg.connect(
        host=settings.get("HOST") or "127.0.0.1",
        port=int(settings.get("PORT") or 5432),
        user=settings.get("USER") or "root",
        dbname=settings["NAME"],
    )
    try:
        holder.execute("LOCK TABLE apikeys_apikey IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        reply = call(server.url, "GET", "/v1/me", headers=bearer(valid), timeout=40)
        waited = time.monotonic() - started
    finally:
        holder.rollback()
        holder.close()
    assert (reply.status, reply.code) == (503, "SERVICE_UNAVAILABLE")
    assert waited < 15  # .ci/pgbouncer's query_timeout is 5 s
    wait_for(server.url, valid, 200)


def test_pgbouncer_restart_is_503_then_recovers(rig):
    server, _proxy, bouncer, (valid, revoked) = rig
    wait_for(server.url, valid, 200)
    with Load(server.url, valid, revoked) as load:
        time.sleep(0.5)
        bouncer.stop()
        wait_for(server.url, valid, 503)
        time.sleep(0.5)
        bouncer.start()  # same port: the workers' next connection finds it
        wait_for(server.url, valid, 200)
        time.sleep(0.5)
    assert_only_right_decisions_or_503(load)
    assert load.tally()[("valid", 503, "SERVICE_UNAVAILABLE")], load.tally()
    assert until_ready(server.url).status == 200


@pytest.mark.skipif(
    not pgbouncer.servers_via_pgbouncer(), reason="TEST_SERVERS_VIA_PGBOUNCER is off"
)
def test_servers_reach_the_database_through_the_session_pgbouncer(live_url, keys):
    valid, _revoked = keys
    assert call(live_url, "GET", "/v1/me", headers=bearer(valid)).status == 200
    log = pgbouncer.session_pgbouncer.log()
    assert f"{connection.settings_dict['NAME']}/" in log
    assert "new connection to server" in log


_ATOMIC_LOOKUP = """
import os, sys
import django
django.setup()
import psycopg
from django.db import transaction
from apps.apikeys.selectors import key_by_digest

key_by_digest("0" * 64)  # outside a transaction: on whichever server session PgBouncer lends
holder = psycopg.connect(os.environ["DATABASE_URL"].replace("postgres://", "postgresql://"))
holder.execute("SELECT 1")  # an open transaction keeps one server session busy
with transaction.atomic():  # so this transaction runs on another one
    key_by_digest("0" * 64)
    key_by_digest("0" * 64)
holder.rollback()
print("ok")
"""


def run_behind_pgbouncer(script: str, pooler: str | None = None) -> subprocess.CompletedProcess:
    """`script` in a process with the default settings (no DATABASE_POOLER: SPEC §4.14 says
    the service runs unchanged), or DATABASE_POOLER=`pooler`, whose DATABASE_URL is a
    private PgBouncer."""
    settings = connection.settings_dict
    bouncer = pgbouncer.PgBouncer(
        (settings.get("HOST") or "127.0.0.1", int(settings.get("PORT") or 5432))
    ).start()
    try:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "sigsentry.test_settings",
            "DATABASE_URL": bouncer.database_url(settings.get("USER") or "root", settings["NAME"]),
        }
        env.pop("DATABASE_POOLER", None)
        if pooler is not None:
            env["DATABASE_POOLER"] = pooler
        return subprocess.run(
            [sys.executable, "-c", script],
            cwd=pgbouncer.ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        bouncer.close()


def test_key_lookup_inside_a_transaction_works_behind_pgbouncer(transactional_db):
    result = run_behind_pgbouncer(_ATOMIC_LOOKUP)
    assert result.returncode == 0, result.stderr[-1500:]
    assert result.stdout.strip() == "ok"


_CONNECTIONS_IN_TURN = """
import threading
import django
django.setup()
from django.db import connections
from apps.accounts.models import User
from apps.apikeys.selectors import key_by_digest

errors = []

def requests_of_one_connection():
    try:
        for _ in range(8):  # more than psycopg's prepare_threshold
            key_by_digest("0" * 64)
            list(User.objects.filter(email="nobody@example.com"))
    except Exception as exc:
        errors.append(repr(exc))
    connections.close_all()

for _ in range(2):  # the second client connection gets the first one's server session
    worker = threading.Thread(target=requests_of_one_connection)
    worker.start()
    worker.join()
print(errors or "ok")
"""


def test_default_settings_run_unchanged_behind_pgbouncer(transactional_db):
    """Statements psycopg prepared for one client connection stay on the server session
    PgBouncer lent it; the next client to get that session must not meet them (with
    preparation on: `prepared statement "_pg3_0" already exists`, or another client's SQL
    run under a name this one prepared elsewhere)."""
    result = run_behind_pgbouncer(_CONNECTIONS_IN_TURN)
    assert result.returncode == 0, result.stderr[-1500:]
    assert result.stdout.strip() == "ok"


_FIRST_QUERY = """
import django
django.setup()
from django.db import OperationalError
from apps.apikeys.selectors import key_by_digest

for _ in range(2):  # and again: the refused connection is not kept
    try:
        key_by_digest("0" * 64)
    except OperationalError as exc:
        print(exc)
    else:
        print("answered")
"""


def test_prepared_statements_declared_behind_pgbouncer_are_refused_at_connect():
    """A PgBouncer audit: DATABASE_POOLER=none behind PgBouncer was taken at its word, and
    psycopg ran its statements under names another client had prepared for other SQL:
    503s, 400s for valid keys, 401s for live sessions, and rows of another query. Such a
    connection is refused when it opens: a 503, never an answer."""
    result = run_behind_pgbouncer(_FIRST_QUERY, pooler="none")

    assert result.returncode == 0, result.stderr[-1500:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2 and all("leads to a pooler" in line for line in lines), lines
