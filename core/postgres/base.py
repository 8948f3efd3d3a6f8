"""Django's PostgreSQL backend with a health check that costs no round trip.

`CONN_HEALTH_CHECKS` asks the backend, before a persistent connection's first use
in a request, whether the connection still works; Django's answer is a `SELECT 1`,
one more round trip on every request. A server, pooler or idle timeout that drops
the connection sends its last message and closes the socket, so between requests
an idle connection has nothing to read unless it is going away: the check is one
non-blocking poll of the socket. A connection psycopg found broken, or left busy or in
a failed transaction, is not usable either. Subclassing the built-in backend is
Django's documented way to change its behaviour (docs: "Subclassing the built-in
database backends").

With prepared statements on (DATABASE_POOLER=none), a new connection is refused unless it
reaches PostgreSQL itself (`_require_postgresql_itself`).
"""

from __future__ import annotations

import logging
import select

import psycopg
from django.db.backends.postgresql import base
from psycopg.pq import TransactionStatus

_READY = (TransactionStatus.IDLE, TransactionStatus.INTRANS)

logger = logging.getLogger("core.errors")

BEHIND_A_POOLER = (
    "DATABASE_POOLER=none, but DATABASE_URL leads to a pooler, not to PostgreSQL itself: "
    "prepared statements would run on server sessions other clients share. Unset "
    "DATABASE_POOLER (README: Production, PgBouncer)."
)


def behind_a_pooler(connection: psycopg.Connection) -> bool:
    """Whether `connection` leads to a pooler rather than to a session of PostgreSQL's own. A
    pooler gives its client a process id of its own, never the server session's."""
    opens_a_transaction = (
        not connection.autocommit and connection.info.transaction_status == TransactionStatus.IDLE
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (server_pid,) = cursor.fetchone()
    if opens_a_transaction:
        connection.rollback()  # only the transaction this read began
    return server_pid != connection.info.backend_pid


def _require_postgresql_itself(connection: psycopg.Connection) -> None:
    """Prepared statements (DATABASE_POOLER=none) are safe only on a session of PostgreSQL's
    own: behind PgBouncer psycopg ran its statements under names another client had
    prepared for other SQL, and answered with that SQL's rows (a PgBouncer audit)."""
    if behind_a_pooler(connection):
        connection.close()
        logger.error(BEHIND_A_POOLER)
        raise psycopg.OperationalError(BEHIND_A_POOLER)  # Django's: a 503, not an answer


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        connection = super().get_new_connection(conn_params)
        if self.settings_dict["OPTIONS"].get("prepare_threshold") is not None:
            _require_postgresql_itself(connection)
        return connection

    def is_usable(self) -> bool:
        connection = self.connection
        if connection is None or connection.closed:
            return False
        if connection.info.transaction_status not in _READY:
            return False
        poll = select.poll()
        poll.register(connection.fileno(), select.POLLIN | select.POLLPRI)
        return not poll.poll(0)  # readable, hung up or failed: the server is going away
