"""Real gunicorn servers for black-box, browser and multi-process tests.

A server runs `sigsentry.wsgi` with the test settings against the test
database that pytest-django created, so tests that use it must commit their
data (`transactional_db`). On SQLite the test database is a file for the same
reason (see sigsentry/test_settings.py). With TEST_SERVERS_VIA_PGBOUNCER on, servers
reach PostgreSQL through a PgBouncer in transaction mode (tests/pgbouncer.py).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from django.db import connection
from time_machine import escape_hatch

from tests import pgbouncer

ROOT = Path(__file__).resolve().parent.parent
#: How long a test of real processes waits for something to happen at all: generous, for a
#: loaded host (CI: two suites on two cores). No promise is checked by it: a test that needs
#: one measures it on the product's own timestamps.
AT_ALL = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_database_url() -> str:
    settings = connection.settings_dict
    if connection.vendor == "postgresql":
        user = settings.get("USER") or "root"
        if pgbouncer.session_pgbouncer is not None:
            return pgbouncer.session_pgbouncer.database_url(user, settings["NAME"])
        host = settings.get("HOST") or "127.0.0.1"
        port = settings.get("PORT") or 5432
        return f"postgres://{user}@{host}:{port}/{settings['NAME']}"
    return f"sqlite:///{settings['NAME']}"


def database_environment() -> dict[str, str]:
    """DATABASE_URL for a server on the test database (through the session's PgBouncer
    when TEST_SERVERS_VIA_PGBOUNCER is on, with the default settings: no DATABASE_POOLER)."""
    env = {"DATABASE_URL": test_database_url()}
    if connection.vendor == "postgresql" and pgbouncer.session_pgbouncer is not None:
        env["DATABASE_POOLER"] = ""  # SPEC §4.14: runs unchanged behind PgBouncer
    return env


class GunicornServer:
    """gunicorn on the test database. Its clock is the test process's (moved or not), or
    starts at `clock` (seconds since the epoch, still ticking) when given."""

    def __init__(
        self, env: dict[str, str] | None = None, workers: int = 2, clock: float | None = None
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = ROOT / "test-artifacts" / f"gunicorn-{self.port}.log"
        self.log_path.parent.mkdir(exist_ok=True)
        inherited = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
        self.env = {
            **inherited,
            "DJANGO_SETTINGS_MODULE": "sigsentry.test_settings",
            **database_environment(),
            "HTTPS_ONLY": "false",
            "DEBUG": "false",
            **(env or {}),
        }
        self.workers = workers
        self.clock = clock
        self.process: subprocess.Popen | None = None

    def start(self) -> GunicornServer:
        runner, env = "gunicorn", self.env
        if self.clock is not None or escape_hatch.is_travelling():
            # A moved clock (tests/clocked_gunicorn.py): this one's, or the one asked for.
            now = time.time() if self.clock is None else self.clock
            real = escape_hatch.time.time() if escape_hatch.is_travelling() else time.time()
            runner = "tests.clocked_gunicorn"
            offset = now - real
            env = {**env, "SIGSENTRY_TEST_CLOCK_OFFSET": repr(offset)}
        # The child has its own descriptor of the log; this process's is closed (left open,
        # one per server, each a ResourceWarning when collected).
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    runner,
                    "sigsentry.wsgi:application",
                    "--bind",
                    f"127.0.0.1:{self.port}",
                    "--workers",
                    str(self.workers),
                    "--timeout",
                    "30",
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log_path.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(self.url + "/v1/schema", timeout=2)
                return self
            except urllib.error.HTTPError:
                return self  # it answered
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("gunicorn did not start in 30 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None
