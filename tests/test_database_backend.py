"""`core.postgres`: Django's PostgreSQL backend whose health check costs no round trip.

With `CONN_HEALTH_CHECKS` a persistent connection is checked before its first use in
each request; a connection the server dropped must be replaced before the request uses
it (never a failed request), and a healthy one must not pay a statement for the check.
"""

from __future__ import annotations

import os
import socket
import time

import psycopg
import pytest
from django.db import close_old_connections, connection, connections
from django.db.utils import OperationalError

from apps.apikeys.selectors import key_by_digest

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="the backend subclasses PostgreSQL's"
    ),
]


def other_session() -> psycopg.Connection:
    return psycopg.connect(**connection.get_connection_params(), autocommit=True)


def last_statement_of(pid: int) -> str:
    with other_session() as other:
        row = other.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()
    return row[0]


def terminate(pid: int) -> None:
    with other_session() as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    deadline = time.monotonic() + 5
    while connection.is_usable() and time.monotonic() < deadline:
        time.sleep(0.01)  # the server's goodbye reaches the socket


@pytest.fixture
def persistent_connection():
    """A reused, health-checked connection as in production (never closed for its age)."""
    connection.ensure_connection()
    connection.close_at = None
    assert connection.health_check_enabled
    yield connection
    connection.close()


def next_request() -> None:
    close_old_connections()  # what Django runs on request_started


def test_the_settings_use_the_subclassed_backend():
    assert connection.settings_dict["ENGINE"] == "core.postgres"
    assert type(connections["default"]).__module__ == "core.postgres.base"


def test_a_healthy_connection_is_checked_without_a_statement(persistent_connection):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 'the last statement'")
    pid = connection.connection.info.backend_pid
    next_request()
    assert connection.is_usable()
    connection.close_if_health_check_failed()
    assert connection.connection.info.backend_pid == pid  # kept
    # Django's own check would have run `SELECT 1` on the session.
    assert last_statement_of(pid) == "SELECT 'the last statement'"


def test_a_connection_the_server_dropped_is_replaced_before_the_request_uses_it(
    persistent_connection, project
):
    key_by_digest("0" * 64)
    pid = connection.connection.info.backend_pid
    terminate(pid)
    assert not connection.is_usable()
    next_request()
    assert key_by_digest("0" * 64) is None  # the request's first query works
    assert connection.connection.info.backend_pid != pid


def test_without_health_checks_the_dropped_connection_fails_the_request(
    persistent_connection, project
):
    """The contrast that shows the test above measures something."""
    connection.health_check_enabled = False
    key_by_digest("0" * 64)
    terminate(connection.connection.info.backend_pid)
    next_request()
    with pytest.raises(OperationalError):
        key_by_digest("0" * 64)


def test_a_connection_in_a_failed_transaction_is_not_usable(persistent_connection):
    connection.connection.autocommit = False
    with pytest.raises(psycopg.errors.DivisionByZero):
        connection.connection.execute("SELECT 1/0")
    assert not connection.is_usable()
    connection.connection.rollback()
    assert connection.is_usable()
    connection.connection.autocommit = True


def test_a_connection_broken_under_a_query_is_not_usable(persistent_connection):
    terminate(connection.connection.info.backend_pid)
    with pytest.raises(OperationalError), connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    assert not connection.is_usable()


def test_a_closed_connection_is_not_usable(persistent_connection):
    connection.connection.close()
    assert not connection.is_usable()


def test_a_vanished_database_is_noticed_in_seconds_not_after_tcp_gives_up():
    """A peer gone without a word: unacknowledged data fails the query after 10 s (a 503),
    and an idle connection is probed after 30 s; without these the kernel retries for ~15
    minutes and the request hangs until gunicorn kills its worker."""
    connection.ensure_connection()
    sock = socket.socket(fileno=os.dup(connection.connection.fileno()))
    try:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            pytest.skip("DATABASE_URL is a Unix socket: no TCP to lose")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 10_000
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 10
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
    finally:
        sock.close()
