"""The operator's command line (`manage.py` and the project's commands), as cron and a shell
see it: one line on stderr and a non-zero exit for what the operator has to fix (the
database down, a bad setting, failed emails or tasks), and nothing on stdout with `-v 0`.

Found by a commands audit: a database that was down gave a 70-100 line traceback, a missing
SECRET_KEY a 52-line one opening on a KeyError, failed emails exited 0."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import OperationalError

from core.management.base import database_error_line

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "hunter2-not-for-logs"


@pytest.fixture(scope="module")
def closed_port():
    """A port nothing listens on: bound and never listening, so a connection is refused,
    and no other process can take it while the tests run."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def manage(*args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess:
    """`python manage.py ARGS` as an operator runs it: only the environment given here."""
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=base | {"DEBUG": "true", "REDIS_URL": ""} | env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def the_one_line(result: subprocess.CompletedProcess) -> str:
    """What stderr says, which must be one line: the JSON log lines (run_worker's "worker
    started" and "stopped") aside."""
    [line] = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    return line


@pytest.mark.parametrize(
    "command",
    [
        ["flush_usage"],
        ["housekeeping"],
        ["send_notifications"],
        ["reseal_secrets"],
        ["import_legacy_keys", "-"],
        ["seed_demo"],
        ["run_worker", "--once"],
    ],
    ids=lambda command: command[0],
)
def test_a_database_that_is_down_is_one_line_and_exit_1(command, closed_port):
    url = f"postgres://sigsentry:{PASSWORD}@127.0.0.1:{closed_port}/sigsentry"
    csv = f"key,project_id,name,permissions\ntb_9fKq2LmN7xQwE4rT1yU8iO0p,{'0' * 32},Legacy,\n"

    result = manage(*command, stdin=csv, DATABASE_URL=url)

    assert result.returncode == 1, result.stderr
    assert the_one_line(result).startswith(
        "CommandError: database (DATABASE_URL) unreachable: connection failed: "
    )
    assert f"port {closed_port} failed: Connection refused" in result.stderr
    assert PASSWORD not in result.stdout + result.stderr


def test_traceback_still_shows_the_traceback(closed_port):
    result = manage(
        "housekeeping", "--traceback", DATABASE_URL=f"postgres://u@127.0.0.1:{closed_port}/db"
    )

    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "django.db.utils.OperationalError: connection failed" in result.stderr


def test_the_line_for_a_database_error_never_holds_the_password(monkeypatch, settings):
    monkeypatch.setitem(settings.DATABASES["default"], "PASSWORD", PASSWORD)

    line = database_error_line(OperationalError(f"auth failed for {PASSWORD}\nmore"))

    assert PASSWORD not in line and line.endswith("auth failed for …")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "command", [["housekeeping"], ["send_notifications"], ["reseal_secrets"], ["flush_usage"]]
)
def test_verbosity_0_prints_nothing_on_success(command):
    out = StringIO()

    call_command(*command, verbosity=0, stdout=out)

    assert out.getvalue() == ""
