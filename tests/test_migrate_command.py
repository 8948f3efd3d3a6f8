"""`manage.py migrate` on PostgreSQL (core/management/commands/migrate.py): it reaches
PostgreSQL itself, never a pooler, and waits a bounded time for a lock, so an upgrade run
beside the release before cannot stop its key checks for as long as a long transaction
lasts (README, Upgrading)."""

from __future__ import annotations

import os
import threading
import time

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection

from core.management.commands.migrate import LOCK_TIMEOUT
from tests import pgbouncer
from tests.test_commands import manage

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="lock_timeout and poolers are PostgreSQL's"
)


def other_session(dbname: str | None = None) -> psycopg.Connection:
    params = connection.get_connection_params()
    if dbname is not None:
        params["dbname"] = dbname
    return psycopg.connect(**params, autocommit=True)


@pytest.fixture
def scratch():
    """An empty database of its own (each `migrate` below runs in a process of its own)."""
    name = f"test_migrate_command_{os.getpid()}"
    with other_session() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    params = connection.get_connection_params()
    yield name, f"postgres://{params['user']}@{params['host']}:{params['port']}/{name}"
    with other_session() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.django_db
def test_a_session_without_a_lock_timeout_gets_one_and_one_given_is_kept():
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = 0")
        call_command("migrate", verbosity=0)
        cursor.execute("SHOW lock_timeout")
        assert cursor.fetchone() == (LOCK_TIMEOUT,)

        cursor.execute("SET lock_timeout = '750ms'")
        call_command("migrate", verbosity=0)
        cursor.execute("SHOW lock_timeout")
        assert cursor.fetchone() == ("750ms",)


def test_a_migration_behind_a_long_transaction_stops_in_one_line_and_runs_again(scratch):
    """What the key checks behind the lock wait for is the migration's own wait in the lock
    queue: timed there, from PostgreSQL's view, not as the command's whole run (its start-up
    took 24 s on a loaded host, past a bound of 15 s). The lock is held until the command
    has ended, so one that did not stop by itself would never end."""
    name, url = scratch
    assert manage("migrate", "--noinput", "-v", "0", DATABASE_URL=url).returncode == 0
    assert manage("migrate", "apikeys", "0008", "-v", "0", DATABASE_URL=url).returncode == 0
    held, release = threading.Event(), threading.Event()
    queued_at: list[float] = []  # each time a session of the database is seen waiting

    def hold_the_keys_table():  # as a pg_dump or an analyst's query would
        with other_session(name) as holder, holder.transaction():
            holder.execute("LOCK TABLE apikeys_apikey IN ACCESS EXCLUSIVE MODE")
            held.set()
            release.wait(120)

    def watch_the_lock_queue():
        with other_session() as watcher:
            while not release.is_set():
                waiting = watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = %s AND wait_event_type = 'Lock'",
                    [name],
                ).fetchone()[0]
                if waiting:
                    queued_at.append(time.monotonic())
                time.sleep(0.01)

    threads = [threading.Thread(target=hold_the_keys_table)]
    try:
        threads[0].start()
        assert held.wait(30)
        threads.append(threading.Thread(target=watch_the_lock_queue))
        threads[1].start()
        stopped = manage("migrate", "--noinput", DATABASE_URL=url, PGOPTIONS="-c lock_timeout=1s")
    finally:
        release.set()
        for thread in threads:
            thread.join(30)

    assert stopped.returncode == 1
    assert "Traceback" not in stopped.stderr
    assert "waited 1s for a lock" in stopped.stderr
    assert "run migrate again" in stopped.stderr.lower()
    assert queued_at, "the migration never waited for the lock"
    assert queued_at[-1] - queued_at[0] < 3  # 1 s (lock_timeout), once, not again and again
    again = manage("migrate", "--noinput", "-v", "0", DATABASE_URL=url)
    assert again.returncode == 0, again.stderr


@pytest.mark.skipif(not pgbouncer.available(), reason="needs pgbouncer")
def test_migrate_refuses_a_pooler_before_applying_anything(scratch):
    name, _url = scratch
    params = connection.get_connection_params()
    bouncer = pgbouncer.PgBouncer((params["host"], int(params["port"]))).start()
    try:
        result = manage(
            "migrate", "--noinput", DATABASE_URL=bouncer.database_url(params["user"], name)
        )
    finally:
        bouncer.close()

    assert result.returncode == 1
    assert "not a pooler" in result.stderr
    with other_session(name) as session:
        applied = session.execute("SELECT to_regclass('django_migrations')").fetchone()
    assert applied == (None,)
