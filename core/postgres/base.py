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
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base
from psycopg.pq import TransactionStatus

_READY = (TransactionStatus.IDLE, TransactionStatus.INTRANS)


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self) -> bool:
        connection = self.connection
        if connection is None or connection.closed:
            return False
        if connection.info.transaction_status not in _READY:
            return False
        poll = select.poll()
        poll.register(connection.fileno(), select.POLLIN | select.POLLPRI)
        return not poll.poll(0)  # readable, hung up or failed: the server is going away
