"""The operator's command line (`manage.py` and the project's commands), as cron and a shell
see it: one line on stderr and a non-zero exit for what the operator has to fix (the
database down, a bad setting, failed emails or tasks), and nothing on stdout with `-v 0`.

Found by a commands audit: a database that was down gave a 70-100 line traceback, a missing
SECRET_KEY a 52-line one opening on a KeyError, failed emails exited 0."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from datetime import timedelta
from io import StringIO
from pathlib import Path

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, OperationalError, connection
from django.db.models.functions import Now
from django_tasks import task

from apps.apikeys.keyformat import KeyKind
from apps.apikeys.leaks import report_leaked_keys
from apps.apikeys.models import ApiKey
from apps.apikeys.usage.flush import COPY_LOCK, COPY_LOCK_SECONDS
from apps.notifications import tasks
from apps.notifications.management.commands.run_worker import OUTAGE_PAUSE_SECONDS
from apps.notifications.models import Schedule
from core.management.base import database_error_line
from core.management.commands import reseal_secrets
from core.sharedredis import redis_client
from tests.factories import make_key, make_webhook
from tests.outbound import WorkerProcess
from tests.reliability.helpers import TcpProxy

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


@pytest.mark.parametrize("args", [["housekeeping", "--help"], ["check"]])
def test_a_missing_secret_key_is_one_line_and_exit_2(args):
    result = manage(*args, DEBUG="false")

    assert result.returncode == 2
    assert the_one_line(result).startswith("Configuration error: SECRET_KEY is not set.")
    assert "KeyError" not in result.stderr


def test_a_bad_database_url_is_one_line_without_its_password():
    result = manage("check", DATABASE_URL=f"postgres://sigsentry:{PASSWORD}@db:port/sigsentry")

    assert result.returncode == 2
    assert the_one_line(result).startswith("Configuration error: DATABASE_URL cannot be read")
    assert PASSWORD not in result.stderr


def test_a_configuration_error_with_traceback_is_the_traceback():
    result = manage("check", "--traceback", DEBUG="false")

    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "ImproperlyConfigured: SECRET_KEY is not set" in result.stderr


def test_the_line_for_a_database_error_never_holds_the_password(monkeypatch, settings):
    monkeypatch.setitem(settings.DATABASES["default"], "PASSWORD", PASSWORD)

    line = database_error_line(OperationalError(f"auth failed for {PASSWORD}\nmore"))

    assert PASSWORD not in line and line.endswith("auth failed for …")


@pytest.mark.django_db
def test_failed_emails_make_send_notifications_exit_1(
    mailbox, closed_port, settings, owner, project
):
    _key, plaintext = make_key(KeyKind.SECRET, project=project)
    report_leaked_keys(candidates=[plaintext])  # an email to the owner, due now
    settings.EMAIL_PORT = closed_port  # the mail server is down
    out = StringIO()

    with pytest.raises(CommandError, match=r"^1 email\(s\) failed; they are retried later$"):
        call_command("send_notifications", stdout=out)

    assert "email failures: 1" in out.getvalue()  # the report is still written


@pytest.mark.django_db
@pytest.mark.parametrize(
    "command", [["housekeeping"], ["send_notifications"], ["reseal_secrets"], ["flush_usage"]]
)
def test_verbosity_0_prints_nothing_on_success(command):
    out = StringIO()

    call_command(*command, verbosity=0, stdout=out)

    assert out.getvalue() == ""


@task()
def fail_on_purpose() -> None:
    raise ValueError("on purpose")


@task()
def succeed() -> str:
    return "done"


@pytest.mark.django_db(transaction=True)
def test_run_worker_once_exits_1_when_a_task_it_ran_failed():
    for name, _every, _job in tasks.schedules(tasks.CHECKS_EVERY, tasks.URGENT_EVERY):
        # no scheduled check due: the worker runs these tasks only
        Schedule.objects.create(name=name, next_run_at=Now() + timedelta(hours=1))
    succeed.enqueue()
    fail_on_purpose.enqueue()
    fail_on_purpose.enqueue()

    with pytest.raises(CommandError) as failed:
        call_command("run_worker", "--once")

    assert str(failed.value) == (
        "ran 3 task(s), 2 failed: tests.test_commands.fail_on_purpose (2) "
        "(their tracebacks are in the task results)"
    )


@pytest.mark.django_db(transaction=True)
def test_run_worker_once_exits_0_when_every_task_succeeded():
    for name, _every, _job in tasks.schedules(tasks.CHECKS_EVERY, tasks.URGENT_EVERY):
        Schedule.objects.create(name=name, next_run_at=Now() + timedelta(hours=1))
    succeed.enqueue()

    call_command("run_worker", "--once")


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_help_lists_every_target_a_user_runs():
    makefile = (ROOT / "Makefile").read_text()
    [phony] = re.findall(r"^\.PHONY:(.*)$", makefile, flags=re.MULTILINE)

    result = subprocess.run(
        ["make", "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True
    )

    assert result.returncode == 0, result.stderr
    listed = set(re.findall(r"\bmake ([\w-]+):", result.stdout))
    assert set(phony.split()) - listed == set()


@pytest.fixture(scope="module")
def unmigrated_postgres():
    """DATABASE_URL of a PostgreSQL database no `migrate` ever ran on, dropped afterwards.

    One for the module: the commands run on it only fail (they create nothing), and each
    database made and dropped cost seconds of the suite's time (DROP DATABASE checkpoints)."""
    if connection.vendor != "postgresql":
        pytest.skip("the suite runs on SQLite")
    database = connection.settings_dict
    server = {k.lower(): database[k] for k in ("HOST", "PORT", "USER", "PASSWORD") if database[k]}
    name = f"{database['NAME']}_unmigrated_{os.getpid()}"
    with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
        admin.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    user = database["USER"] + (f":{database['PASSWORD']}" if database["PASSWORD"] else "")
    yield f"postgres://{user}@{database['HOST']}:{database['PORT'] or 5432}/{name}"
    with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
        admin.execute(
            psycopg.sql.SQL("DROP DATABASE {} WITH (FORCE)").format(psycopg.sql.Identifier(name))
        )


@pytest.mark.parametrize(
    "command",
    [["housekeeping"], ["flush_usage"], ["reseal_secrets"], ["run_worker", "--once"]],
    ids=lambda command: command[0],
)
def test_an_unmigrated_sqlite_database_says_to_migrate_first(command, tmp_path):
    result = manage(*command, DATABASE_URL=f"sqlite:///{tmp_path / 'never-migrated.sqlite3'}")

    assert result.returncode == 1, result.stderr
    assert re.fullmatch(
        r"CommandError: database \(DATABASE_URL\) failed: no such table: \w+; "
        r"run `python manage\.py migrate` first",
        the_one_line(result),
    )


@pytest.mark.parametrize(
    "command",
    [["housekeeping"], ["flush_usage"], ["reseal_secrets"], ["run_worker", "--once"]],
    ids=lambda command: command[0],
)
def test_an_unmigrated_postgresql_database_says_to_migrate_first(command, unmigrated_postgres):
    result = manage(*command, DATABASE_URL=unmigrated_postgres)

    assert result.returncode == 1, result.stderr
    assert re.fullmatch(
        r'CommandError: database \(DATABASE_URL\) failed: relation "\w+" does not exist; '
        r"run `python manage\.py migrate` first",
        the_one_line(result),
    )


def test_another_database_error_gets_no_migrate_hint(db):
    with pytest.raises(DatabaseError) as failed, connection.cursor() as cursor:
        cursor.execute("SELECT no_such_column FROM django_migrations")

    assert "migrate" not in database_error_line(failed.value)


def no_check_due() -> None:
    """Every scheduled check an hour away: a worker started now runs only what a test queues."""
    for name, _every, _job in tasks.schedules(tasks.CHECKS_EVERY, tasks.URGENT_EVERY):
        Schedule.objects.create(name=name, next_run_at=Now() + timedelta(hours=1))


def wait_for_line(worker: WorkerProcess, pattern: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not re.search(pattern, worker.log()):
        assert worker.process.poll() is None, f"the worker exited: {worker.log()[-2000:]}"
        assert time.monotonic() < deadline, f"no {pattern!r} in {timeout} s: {worker.log()}"
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_run_worker_says_once_that_the_database_went_and_once_that_it_came_back():
    """A real outage: the worker reaches PostgreSQL through a TCP proxy the test cuts."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL cut by a proxy; SQLite has no server to cut")
    no_check_due()
    database = connection.settings_dict
    proxy = TcpProxy((database["HOST"] or "127.0.0.1", int(database["PORT"] or 5432))).start()
    url = f"postgres://{database['USER']}:{PASSWORD}@127.0.0.1:{proxy.port}/{database['NAME']}"
    worker = WorkerProcess({"DATABASE_URL": url}, "--poll-interval", "0.2")
    try:
        worker.log_path.parent.mkdir(exist_ok=True)
        worker.log_path.write_text("")  # an earlier worker's lines, had it the same name
        worker.start().wait_started()
        deadline = time.monotonic() + 30
        while proxy.connection_count < 1:  # it reached the database through the proxy
            assert time.monotonic() < deadline, worker.log()
            time.sleep(0.1)

        proxy.stop()  # the database is gone: open connections broken, new ones refused
        wait_for_line(worker, r"worker: database \(DATABASE_URL\) (unreachable|failed): ")
        time.sleep(OUTAGE_PAUSE_SECONDS + 2)  # it tried again at least once, still down
        proxy.start()
        wait_for_line(worker, "worker: database reachable again")
        assert worker.terminate() == 0
    finally:
        worker.stop()
        proxy.stop()

    records = [json.loads(line) for line in worker.log().splitlines()]
    said = [r["message"] for r in records if r["message"].startswith("worker: database")]
    assert len(said) == 2, records
    assert said[0].endswith("; trying again every 5 s")
    assert said[1] == "worker: database reachable again"
    assert not [r for r in records if "exception" in r]  # no traceback
    assert PASSWORD not in worker.log()


@pytest.fixture
def copy_lock_held():
    """The usage copy lock held by "another copy" for a second and a half (then it expires)."""
    client = redis_client()
    if client is None:
        pytest.skip("without REDIS_URL there is no copy lock")
    assert client.lock(COPY_LOCK, timeout=1.5).acquire(blocking=False)
    yield
    client.delete(COPY_LOCK)


@pytest.mark.django_db
@pytest.mark.usefixtures("copy_lock_held")
def test_flush_usage_says_once_that_it_waits_for_a_copy_already_running():
    out = StringIO()

    call_command("flush_usage", stdout=out)

    waiting, copied = out.getvalue().splitlines()
    assert waiting == (
        f"Waiting for a usage copy already running (lock ss:u:copying), at most "
        f"{COPY_LOCK_SECONDS} s…"
    )
    # what earlier tests of this process left in Redis is copied too: any number
    assert re.fullmatch(r"Copied \d+ usage counter\(s\); pruned \d+ old usage row\(s\)\.", copied)


@pytest.mark.django_db
@pytest.mark.usefixtures("copy_lock_held")
def test_flush_usage_waits_in_silence_at_verbosity_0():
    out = StringIO()

    call_command("flush_usage", verbosity=0, stdout=out)

    assert out.getvalue() == ""


@pytest.mark.django_db
def test_reseal_secrets_says_its_progress_after_each_batch(
    owner, organization, settings, monkeypatch
):
    for n in range(5):
        make_webhook(organization, owner, f"https://8.8.8.8/hooks/{n}")
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret-key-after-rotation-0123456789abcdefghij"
    monkeypatch.setattr(reseal_secrets, "BATCH_ROWS", 2)
    out = StringIO()

    call_command("reseal_secrets", stdout=out)

    webhooks = [line for line in out.getvalue().splitlines() if line.startswith("webhooks.")]
    assert webhooks == [
        "webhooks.Webhook.secret_ciphertext: 2 of 5 checked, 2 sealed again…",
        "webhooks.Webhook.secret_ciphertext: 4 of 5 checked, 4 sealed again…",
        "webhooks.Webhook.secret_ciphertext: 5 of 5 checked, 5 sealed again…",
        "webhooks.Webhook.secret_ciphertext: 5 sealed again, 0 already under SECRET_KEY, "
        "0 unreadable.",
    ]


@pytest.mark.django_db
def test_reseal_secrets_says_no_progress_at_verbosity_0(owner, organization, monkeypatch):
    for n in range(3):
        make_webhook(organization, owner, f"https://8.8.8.8/hooks/{n}")
    monkeypatch.setattr(reseal_secrets, "BATCH_ROWS", 2)
    out = StringIO()

    call_command("reseal_secrets", verbosity=0, stdout=out)

    assert out.getvalue() == ""


LEGACY_KEY = "tb_9fKq2LmN7xQwE4rT1yU8iO0p"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "name",
    [
        "tb_AAAAbbbbCCCCdddd1234",  # another legacy key as the name
        LEGACY_KEY,  # the row's own key pasted as its name
        "old key ss_live_Zx81Ab_cD-efGh45IjKl",
    ],
    ids=["tb-key", "its-own-key", "ss_live-key-in-text"],
)
def test_import_legacy_keys_refuses_a_name_that_holds_a_legacy_key(tmp_path, project, name):
    path = tmp_path / "keys.csv"
    path.write_text(
        "key,project_id,name,permissions\n"
        f"tb_Zz0123456789abcdefghij,{project.id},Fine,\n"
        f"{LEGACY_KEY},{project.id},{name},\n"
    )

    with pytest.raises(CommandError) as refused:
        call_command("import_legacy_keys", str(path))

    assert str(refused.value) == (
        "Nothing was imported. line 3: name refused: it holds a legacy key (tb_... or "
        "ss_live_...); a name is shown in the dashboard and the logs"
    )
    assert not ApiKey.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    # shorter after the prefix than any key the import takes (keyformat.LEGACY_MIN_SECRET_LENGTH)
    "name",
    ["tb_ci", "ss_live_dashboard", "ss_live_dashboard-2026", "tb_" + "x" * 19],
)
def test_import_legacy_keys_takes_a_name_that_only_starts_like_one(tmp_path, project, name):
    path = tmp_path / "keys.csv"
    path.write_text(f"key,project_id,name,permissions\n{LEGACY_KEY},{project.id},{name},\n")

    call_command("import_legacy_keys", str(path), verbosity=0)

    assert ApiKey.objects.get().name == name


AUDIT_LINE = (
    '{"time": "2026-12-07T09:00:00.000Z", "level": "INFO", "logger": "sigsentry.audit", '
    '"message": "audit key.revoked", "action": "key.revoked", '
    '"target_id": "4f6f1ad2-3b7e-4f4e-9a53-2b1f3c0a9d11", "key_prefix": "ss_secret_ab12"}\n'
)


def test_reapply_after_restore_reads_standard_input_and_a_database_down_is_one_line(
    closed_port,
):
    url = f"postgres://sigsentry:{PASSWORD}@127.0.0.1:{closed_port}/sigsentry"

    result = manage(
        "reapply_after_restore",
        "--since",
        "2026-12-07T08:00Z",
        "-",
        stdin=AUDIT_LINE,
        DATABASE_URL=url,
    )

    assert result.returncode == 1, result.stderr
    assert the_one_line(result).startswith("CommandError: database (DATABASE_URL) unreachable")
    assert PASSWORD not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "stdin", "line"),
    [
        (["--since", "2026-12-07T08:00Z", "-"], "not a log\n", "CommandError: No sigsentry.audit"),
        (["--since", "2026-12-07T08:00Z", "/no/such/log"], "", "CommandError: Cannot read the log"),
    ],
)
def test_reapply_after_restore_refuses_what_is_no_log_in_one_line(args, stdin, line):
    result = manage("reapply_after_restore", *args, stdin=stdin)

    assert result.returncode == 1, result.stderr
    assert the_one_line(result).startswith(line)
