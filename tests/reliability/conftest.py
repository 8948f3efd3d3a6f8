"""Fixtures for the reliability tests: extra gunicorn servers and the database vendor."""

from __future__ import annotations

import pytest
from django.db import connection

from tests.servers import GunicornServer

requires_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="needs PostgreSQL: row locks and concurrent writers (SQLite serialises all writes)",
)


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


@pytest.fixture
def start_server(django_db_blocker):
    """Start gunicorn servers with extra environment; every one is stopped after the test."""
    started: list[GunicornServer] = []

    def start(
        env: dict[str, str] | None = None, workers: int = 2, clock: float | None = None
    ) -> GunicornServer:
        with django_db_blocker.unblock():
            server = GunicornServer(env=env, workers=workers, clock=clock)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
