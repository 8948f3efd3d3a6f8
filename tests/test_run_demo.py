"""`make run`'s server and worker (`scripts/run-demo.sh`) stop together, however the run
ends: nothing is left serving with nobody to stop it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_env(tmp_path_factory) -> dict[str, str]:
    database = tmp_path_factory.mktemp("run-demo") / "db.sqlite3"
    env = {  # as `make run` sets it, nothing of the test run's own (its database, pooler)
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", str(tmp_path_factory.getbasetemp())),
        "DATABASE_URL": f"sqlite:///{database}",
        "REDIS_URL": "",
        "DEBUG": "true",
        "HTTPS_ONLY": "false",
        "PY": sys.executable,
        "GUNICORN": str(BIN / "gunicorn"),
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    return env


def _spawn(env: dict[str, str], port: int) -> subprocess.Popen:
    return subprocess.Popen(
        ["bash", "scripts/run-demo.sh"],
        cwd=ROOT,
        env=env | {"BIND": f"127.0.0.1:{port}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own group, as a terminal gives it
        preexec_fn=_as_in_a_terminal,
    )


def _start(env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    port = free_port()
    run = _spawn(env, port)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
            return run, port
        except OSError:
            time.sleep(0.2)
    _kill_left(run.pid)
    pytest.fail("the demo server did not start")


def _as_in_a_terminal() -> None:
    """SIGINT as a terminal leaves it (this test may run where it is ignored, and a shell
    cannot trap a signal ignored when it started: `make run &` in a script)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _left(session: int) -> list[str]:
    """The processes still running in the run's session (`ps -g`: by session; the server
    and the worker have process groups of their own)."""
    out = subprocess.run(
        ["ps", "-o", "pid=,args=", "-g", str(session)], capture_output=True, text=True
    )
    return out.stdout.splitlines()


def _gone(session: int, within: float = 10) -> bool:
    deadline = time.monotonic() + within
    while _left(session) and time.monotonic() < deadline:
        time.sleep(0.2)
    return not _left(session)


def _kill_left(session: int) -> None:
    for line in _left(session):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(line.split()[0]), signal.SIGKILL)


@pytest.mark.parametrize(
    ("sent", "to_group"),
    [
        (signal.SIGINT, True),  # Ctrl+C in a terminal
        (signal.SIGHUP, True),  # the terminal closed: gunicorn alone would reload, not stop
        (signal.SIGTERM, False),  # `make` (exec'ing the script) told to stop
        (signal.SIGTERM, True),  # a supervisor stopping the group
    ],
    ids=["ctrl-c", "terminal closed", "sigterm to the script", "sigterm to the group"],
)
def test_the_demo_server_and_worker_stop_together(demo_env, sent, to_group):
    run, port = _start(demo_env)
    if to_group:
        os.killpg(run.pid, sent)
    else:
        run.send_signal(sent)
    try:
        run.wait(timeout=30)
        assert _gone(run.pid)
    finally:
        _kill_left(run.pid)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)


def test_a_server_that_cannot_start_stops_the_worker(demo_env):
    with socket_in_use() as port:
        run = _spawn(demo_env, port)
        try:
            assert run.wait(timeout=60) != 0
            assert _gone(run.pid)
        finally:
            _kill_left(run.pid)


class socket_in_use:
    """A port something else listens on."""

    def __enter__(self) -> int:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        return self.sock.getsockname()[1]

    def __exit__(self, *exc) -> None:
        self.sock.close()


def test_a_second_ctrl_c_stops_at_once(demo_env):
    """The first asks gunicorn to finish its requests in flight (up to 30 s); a request
    that never finishes arriving holds it. The second stops everything now."""
    run, port = _start(demo_env)
    slow = socket.create_connection(("127.0.0.1", port))
    try:
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never ends
        time.sleep(0.5)
        os.killpg(run.pid, signal.SIGINT)
        time.sleep(1)
        os.killpg(run.pid, signal.SIGINT)
        started = time.monotonic()
        run.wait(timeout=20)
        assert time.monotonic() - started < 10 and _gone(run.pid)
    finally:
        slow.close()
        _kill_left(run.pid)
