"""A private PgBouncer (transaction pooling) for tests: started by `.ci/pgbouncer`, on loopback.

`TEST_SERVERS_VIA_PGBOUNCER=1` (CI sets it for one run of the reliability and
server suites) puts one in front of the test database for the whole session
and points every gunicorn server of tests/servers.py at it with the default
settings (no `DATABASE_POOLER`: SPEC §4.14, unchanged); the test process itself keeps its direct
connection (pytest-django creates and drops the test database, which needs a
session of its own). The PgBouncer fault tests start their own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / ".ci" / "pgbouncer"


def available() -> bool:
    return shutil.which("pgbouncer") is not None


def servers_via_pgbouncer() -> bool:
    return os.environ.get("TEST_SERVERS_VIA_PGBOUNCER", "").lower() in ("1", "true", "yes")


class PgBouncer:
    def __init__(self, upstream: tuple[str, int], port: int | None = None) -> None:
        from tests.servers import free_port

        self.upstream = upstream
        self.port = port or free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="pgbouncer-"))

    def start(self) -> PgBouncer:
        host, port = self.upstream
        subprocess.run(
            ["bash", str(SCRIPT), "start", str(self.directory), str(self.port), host, str(port)],
            check=True,
            timeout=30,
        )
        return self

    def stop(self) -> None:
        subprocess.run(["bash", str(SCRIPT), "stop", str(self.directory)], check=True, timeout=30)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def database_url(self, user: str, name: str) -> str:
        return f"postgres://{user}@127.0.0.1:{self.port}/{name}"

    def log(self) -> str:
        path = self.directory / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""


#: The session's PgBouncer when TEST_SERVERS_VIA_PGBOUNCER is on (set by tests/conftest.py).
session_pgbouncer: PgBouncer | None = None
