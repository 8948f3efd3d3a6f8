"""Production settings from the environment (SPEC §8), each read in a process of its own.

Every case runs `sigsentry.settings` in a process of its own with a clean environment,
so nothing from the test run (test settings, DATABASE_URL, REDIS_URL) leaks in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SQLITE_URL = f"sqlite:///{ROOT / 'db.sqlite3'}"
#: What production needs at the least: a secret and a database.
SECRET = {
    "SECRET_KEY": "a-production-secret-key-for-the-settings-tests-0123456789",
    "DATABASE_URL": SQLITE_URL,
}

_PROBE = """
import json, os, sys
import django
os.environ["DJANGO_SETTINGS_MODULE"] = "sigsentry.settings"
from django.conf import settings

def plain(value):
    if hasattr(value, "total_seconds"):
        return value.total_seconds()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value

names = sys.argv[1:]
print(json.dumps({name: plain(getattr(settings, name)) for name in names}, default=str))
"""


#: Forks a process per case from one that has imported, once, what every case imports
#: before `sigsentry.settings` (Django's settings machinery, redis, django-environ: none of
#: them reads the environment when imported). The case's process gets its clean environment
#: and imports the settings afresh, as a new interpreter would: ~0.15 s of CPU less a case
#: (180 cases a run). Its output and exit status are an interpreter's (`python -c`), and
#: SIGALRM ends it after 60 s.
_FORKER = """
import json, os, signal, sys, tempfile, traceback
import django.conf, email.utils, environ, redis.connection

probe = compile(sys.argv[1], "<string>", "exec")
for line in sys.stdin:
    case = json.loads(line)
    outputs = [tempfile.TemporaryFile() for _ in range(2)]
    pid = os.fork()
    if pid == 0:
        signal.alarm(60)
        os.dup2(outputs[0].fileno(), 1)
        os.dup2(outputs[1].fileno(), 2)
        os.environ.clear()
        os.environ.update(case["env"])
        sys.argv = ["-c", *case["names"]]
        code = 0
        try:
            exec(probe, {"__name__": "__main__"})
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    texts = []
    for output in outputs:
        output.seek(0)
        texts.append(output.read().decode())
        output.close()
    print(json.dumps([os.waitstatus_to_exitcode(status), *texts]), flush=True)
"""


_forker_process: subprocess.Popen | None = None


@pytest.fixture(scope="module", autouse=True)
def _forker():
    global _forker_process
    _forker_process = subprocess.Popen(
        [sys.executable, "-c", _FORKER, _PROBE],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp"},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    yield
    _forker_process.stdin.close()
    _forker_process.wait(timeout=60)
    _forker_process = None


def run_settings(env: dict[str, str], *names: str) -> subprocess.CompletedProcess:
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp", **env}
    _forker_process.stdin.write(json.dumps({"env": clean, "names": names}) + "\n")
    _forker_process.stdin.flush()
    returncode, stdout, stderr = json.loads(_forker_process.stdout.readline())
    return subprocess.CompletedProcess(["-c", _PROBE, *names], returncode, stdout, stderr)


def read_settings(env: dict[str, str], *names: str) -> dict:
    result = run_settings(env, *names)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def refused(env: dict[str, str], *mentions: str, hidden: str = "") -> str:
    result = run_settings(env, "DEBUG")
    assert result.returncode != 0
    assert "django.core.exceptions.ImproperlyConfigured" in result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    for mention in mentions:
        assert mention in last_line
    if hidden:  # a password in a URL: nowhere in the output, not even in a traceback
        assert hidden not in result.stderr
    return last_line


def test_without_debug_a_missing_secret_key_is_a_clear_error():
    refused({}, "SECRET_KEY")
    refused({"SECRET_KEY": ""}, "SECRET_KEY")
    refused({"DEBUG": "false"}, "SECRET_KEY")


def test_a_metrics_directory_that_does_not_exist_is_a_clear_error(tmp_path):
    """Found by an audit: every command failed with "Unable to configure filter"."""
    refused(SECRET | {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "gone")}, "not a directory")
    assert read_settings(SECRET | {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}, "DEBUG")


def test_debug_runs_with_a_development_secret_key():
    values = read_settings({"DEBUG": "true"}, "DEBUG", "SECRET_KEY")
    assert values["DEBUG"] is True
    assert "insecure" in values["SECRET_KEY"] and "dev" in values["SECRET_KEY"]


def test_debug_defaults_to_false():
    assert read_settings(SECRET, "DEBUG")["DEBUG"] is False


def test_default_database_is_sqlite_in_the_project_directory_for_development_only():
    """Found by a configuration audit: without DEBUG, a DATABASE_URL that did not reach the
    process ran it on a new SQLite file of its own (and `migrate` made one)."""
    debug = {"DEBUG": "true"}
    database = read_settings(debug, "DATABASES")["DATABASES"]["default"]
    assert database["ENGINE"] == "django.db.backends.sqlite3"
    assert Path(database["NAME"]) == ROOT / "db.sqlite3"
    without = {k: v for k, v in SECRET.items() if k != "DATABASE_URL"}
    refused(without, "DATABASE_URL is not set")
    refused(without | {"DATABASE_URL": "  "}, "DATABASE_URL is not set")
    explicit = read_settings(SECRET, "DATABASES")["DATABASES"]["default"]
    assert Path(explicit["NAME"]) == ROOT / "db.sqlite3"


def test_postgres_url_uses_the_postgresql_engine_with_psycopg_3():
    env = SECRET | {"DATABASE_URL": "postgres://sigsentry@db.internal:5432/sigsentry"}
    database = read_settings(env, "DATABASES")["DATABASES"]["default"]
    assert database["ENGINE"] == "core.postgres"  # Django's backend, subclassed
    assert (database["NAME"], database["USER"], database["HOST"], database["PORT"]) == (
        "sigsentry",
        "sigsentry",
        "db.internal",
        5432,
    )
    assert database["OPTIONS"]["connect_timeout"] == 3
    driver = subprocess.run(
        [
            sys.executable,
            "-c",
            "from django.db.backends.postgresql.psycopg_any import is_psycopg3; "
            "import psycopg; print(is_psycopg3, psycopg.__version__.split('.')[0])",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert driver.stdout.split() == ["True", "3"], driver.stderr


def test_argon2_hashes_passwords_in_production():
    hashers = read_settings(SECRET, "PASSWORD_HASHERS")["PASSWORD_HASHERS"]
    assert hashers[0] == "django.contrib.auth.hashers.Argon2PasswordHasher"


HTTPS_SETTINGS = (
    "HTTPS_ONLY",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
)


def test_https_only_is_the_default_without_debug():
    values = read_settings(SECRET, *HTTPS_SETTINGS)
    assert values == {
        "HTTPS_ONLY": True,
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 31_536_000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
    }


@pytest.mark.parametrize(
    "env", [{"DEBUG": "true"}, SECRET | {"HTTPS_ONLY": "false"}], ids=["debug", "explicit"]
)
def test_https_only_is_off_with_debug_or_when_turned_off(env):
    values = read_settings(env, *HTTPS_SETTINGS)
    assert values == {
        "HTTPS_ONLY": False,
        "SECURE_SSL_REDIRECT": False,
        "SECURE_HSTS_SECONDS": 0,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": False,
        "SESSION_COOKIE_SECURE": False,
        "CSRF_COOKIE_SECURE": False,
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, timedelta(days=30)),
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("45m", timedelta(minutes=45)),
        ("3600s", timedelta(hours=1)),
        ("7200", timedelta(hours=2)),
        (" 2d ", timedelta(days=2)),
    ],
)
def test_session_max_age_is_parsed(value, expected):
    env = SECRET if value is None else SECRET | {"JWT_SESSION_MAX_AGE": value}
    values = read_settings(env, "JWT_SESSION_MAX_AGE", "SIMPLE_JWT")
    assert values["JWT_SESSION_MAX_AGE"] == expected.total_seconds()
    assert values["SIMPLE_JWT"]["REFRESH_TOKEN_LIFETIME"] == str(expected)


@pytest.mark.parametrize(
    "value", ["forever", "30 days", "-1d", "1.5h", "d", "0", "59s", "3651d", "99999999999d"]
)
def test_unreadable_session_max_age_is_a_clear_error(value):
    refused(SECRET | {"JWT_SESSION_MAX_AGE": value}, "JWT_SESSION_MAX_AGE")


def test_legacy_dates_default_to_the_launch_and_sunset():
    values = read_settings(SECRET, "LEGACY_KEYS_DEPRECATED_AT", "LEGACY_KEYS_SUNSET_AT")
    assert values == {
        "LEGACY_KEYS_DEPRECATED_AT": "2026-11-26T00:00:00+00:00",
        "LEGACY_KEYS_SUNSET_AT": "2027-05-26T00:00:00+00:00",
    }


def test_legacy_dates_are_read_from_the_environment_and_kept_in_utc():
    """Any offset is accepted and brought to UTC: the `Sunset` header is an HTTP date (GMT;
    `format_datetime(usegmt=True)` refuses any other zone, a 500 on every legacy-key
    request) and the reminder emails print the moment as UTC."""
    env = SECRET | {
        "LEGACY_KEYS_DEPRECATED_AT": "2026-01-01T12:00:00+02:00",
        "LEGACY_KEYS_SUNSET_AT": "2026-07-01T00:00:00Z",
    }
    values = read_settings(env, "LEGACY_KEYS_DEPRECATED_AT", "LEGACY_KEYS_SUNSET_AT")
    assert values == {
        "LEGACY_KEYS_DEPRECATED_AT": "2026-01-01T10:00:00+00:00",
        "LEGACY_KEYS_SUNSET_AT": "2026-07-01T00:00:00+00:00",
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LEGACY_KEYS_SUNSET_AT", "2027-05-26T00:00:00"),
        ("LEGACY_KEYS_SUNSET_AT", "next spring"),
        ("LEGACY_KEYS_DEPRECATED_AT", "2026-13-01T00:00:00Z"),
    ],
    ids=["no-time-zone", "not-a-time", "no-such-month"],
)
def test_unreadable_legacy_dates_are_a_clear_error(name, value):
    refused(SECRET | {name: value}, name)


def test_redis_url_selects_the_shared_cache():
    shared = read_settings(SECRET | {"REDIS_URL": "redis://127.0.0.1:6379/5"}, "CACHES")
    assert shared["CACHES"]["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    local = read_settings(SECRET, "CACHES")
    assert local["CACHES"]["default"]["BACKEND"] == "django.core.cache.backends.locmem.LocMemCache"


def test_hosts_and_proxies_have_safe_defaults():
    values = read_settings(SECRET, "ALLOWED_HOSTS", "NUM_PROXIES")
    assert values == {"ALLOWED_HOSTS": ["localhost", "127.0.0.1"], "NUM_PROXIES": 0}
    refused(SECRET | {"NUM_PROXIES": "-1"}, "NUM_PROXIES")


def test_jwt_signing_key_is_derived_from_the_secret_key_unless_set():
    derived = read_settings(SECRET, "JWT_SIGNING_KEY")["JWT_SIGNING_KEY"]
    other_secret = SECRET | {"SECRET_KEY": "another-production-secret-key-0123456789"}
    other = read_settings(other_secret, "JWT_SIGNING_KEY")["JWT_SIGNING_KEY"]
    assert derived != other and SECRET["SECRET_KEY"] not in derived
    key = "jwt-signing-key-of-its-own-0123456789abcdef"
    explicit = read_settings(SECRET | {"JWT_SIGNING_KEY": key}, "JWT_SIGNING_KEY")
    assert explicit["JWT_SIGNING_KEY"] == key


def test_an_empty_allowed_hosts_is_a_clear_error():
    refused(SECRET | {"ALLOWED_HOSTS": ""}, "ALLOWED_HOSTS")


def test_metrics_are_off_without_a_token_and_a_short_token_is_refused():
    assert read_settings(SECRET, "METRICS_TOKEN")["METRICS_TOKEN"] == ""
    refused(SECRET | {"METRICS_TOKEN": "short-and-guessable"}, "METRICS_TOKEN")
    token = "m" * 32
    assert read_settings(SECRET | {"METRICS_TOKEN": token}, "METRICS_TOKEN") == {
        "METRICS_TOKEN": token
    }


def test_persistent_connections_are_health_checked():
    database = read_settings(SECRET, "DATABASES")["DATABASES"]["default"]
    assert database["CONN_HEALTH_CHECKS"] is True
    assert database["CONN_MAX_AGE"] == 60


POSTGRES = {"DATABASE_URL": "postgres://sigsentry@pgbouncer.internal:6432/sigsentry"}


@pytest.mark.parametrize(
    "pooler", [{}, {"DATABASE_POOLER": "pgbouncer"}], ids=["unset", "pgbouncer"]
)
def test_by_default_nothing_outlives_a_transaction_on_the_server(pooler):
    """SPEC §4.14: the service runs unchanged behind PgBouncer in transaction mode, so the
    default keeps nothing on a server session between transactions: no prepared statement
    (psycopg would run a name it prepared on one session on another, where another client
    may hold it for other SQL) and no server-side cursor."""
    database = read_settings(SECRET | POSTGRES | pooler, "DATABASES")["DATABASES"]["default"]
    assert database["DISABLE_SERVER_SIDE_CURSORS"] is True
    assert database["OPTIONS"]["prepare_threshold"] is None
    assert database["CONN_HEALTH_CHECKS"] is True
    assert "server_side_binding" not in database["OPTIONS"]  # Django's client-side binding


def test_a_declared_direct_postgresql_connection_binds_and_prepares_on_the_server():
    """DATABASE_POOLER=none: psycopg prepares a statement run a fifth time on a connection
    (the key lookup, once per connection instead of once per request)."""
    direct = read_settings(SECRET | POSTGRES | {"DATABASE_POOLER": "none"}, "DATABASES")[
        "DATABASES"
    ]["default"]
    assert direct["OPTIONS"]["server_side_binding"] is True
    assert direct["OPTIONS"]["prepare_threshold"] == 5
    assert direct.get("DISABLE_SERVER_SIDE_CURSORS", False) is False
    sqlite = read_settings(SECRET, "DATABASES")["DATABASES"]["default"]
    assert "server_side_binding" not in sqlite.get("OPTIONS", {})


def test_an_unknown_pooler_or_pgbouncer_without_postgresql_is_a_clear_error():
    refused(SECRET | POSTGRES | {"DATABASE_POOLER": "pgpool"}, "DATABASE_POOLER")
    refused(SECRET | {"DATABASE_POOLER": "pgbouncer"}, "DATABASE_POOLER", "PostgreSQL")
    refused(SECRET | {"DATABASE_POOLER": "none"}, "DATABASE_POOLER", "PostgreSQL")


# Bad values are refused at start, naming the variable (not read as something else, and not a
# bare ValueError or a failure on every request later).


@pytest.mark.parametrize(
    "value",
    [
        "127.0.0.1:6379/12",
        "garbage",
        "http://127.0.0.1:6379/0",
        "redis://127.0.0.1:6379/notadb",
        "redis://127.0.0.1:port/0",
        "redis://127.0.0.1:6379/0?db=-1",
        "unix://",
        "redis://:hunter2/x@127.0.0.1:6379/0",  # an unescaped `/` cuts the password
    ],
)
def test_a_malformed_redis_url_is_refused(value):
    refused(SECRET | {"REDIS_URL": value}, "REDIS_URL", hidden="hunter2")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HTTPS_ONLY", "sure"),
        ("HTTPS_ONLY", "ture"),
        ("DEBUG", "maybe"),
        ("WEBHOOKS_ALLOW_PRIVATE", "2"),
        ("WEBHOOKS_ALLOW_PRIVATE", "enabled"),
    ],
)
def test_a_boolean_that_is_neither_true_nor_false_is_refused(name, value):
    refused(SECRET | {name: value}, name, repr(value))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("NUM_PROXIES", "abc"),
        ("NUM_PROXIES", "1.5"),
        ("NUM_PROXIES", "-1"),
        ("USAGE_FLUSH_SECONDS", "-1"),
        ("USAGE_FLUSH_SECONDS", "abc"),
        ("USAGE_BATCH_SECONDS", "-1"),
        ("USAGE_BATCH_SECONDS", "nan"),
        ("USAGE_BATCH_SECONDS", "inf"),
        ("USAGE_BATCH_SECONDS", "1s"),
        ("USAGE_BATCH_SECONDS", "1e10"),
        ("USAGE_FLUSH_SECONDS", "100000"),
        ("WEBHOOK_ATTEMPTS_PER_ORGANIZATION", "-1"),
        ("WEBHOOK_ATTEMPTS_PER_ORGANIZATION", "2.5"),
    ],
)
def test_a_number_that_is_not_a_count_or_an_interval_is_refused(name, value):
    refused(SECRET | {name: value}, name, repr(value))


@pytest.mark.parametrize(
    "value",
    [
        "garbage",
        "",
        "postgres://sigsentry:hunter2@db.internal:port/sigsentry",
        "postgres://sigsentry:hunter2/x@db.internal:5432/sigsentry",
        "mongodb://sigsentry:hunter2@db.internal/sigsentry",
        "postgres://sigsentry:hunter2@db.internal:5432/",
    ],
)
def test_an_unusable_database_url_is_refused_without_its_password(value):
    refused(SECRET | {"DATABASE_URL": value}, "DATABASE_URL", hidden="hunter2")


@pytest.mark.parametrize(
    "value",
    ["garbage", "mail://user:hunter2@smtp.internal:587", "smtp://user:hunter2@smtp.internal:tls"],
)
def test_an_unreadable_email_url_is_refused_without_its_password(value):
    refused(SECRET | {"EMAIL_URL": value}, "EMAIL_URL", hidden="hunter2")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SECRET_KEY", "changeme"),
        ("SECRET_KEY", "x" * 31),
        ("SECRET_KEY", " " * 40),
        ("JWT_SIGNING_KEY", "short-signing-key"),
        ("JWT_SIGNING_KEY", "\t" * 40),
    ],
)
def test_a_short_or_blank_signing_secret_is_refused_without_debug(name, value):
    refused(SECRET | {name: value}, name, hidden=value.strip())


@pytest.mark.parametrize(
    "env",
    [
        {"LEGACY_KEYS_DEPRECATED_AT": "2027-06-01T00:00:00Z"},
        {"LEGACY_KEYS_SUNSET_AT": "2026-11-25T23:59:59Z"},
        {"SITE_URL": "sigsentry.example.com"},
        {"SITE_URL": "ftp://sigsentry.example.com"},
        {"SITE_URL": ""},
        {"SITE_URL": "https://"},
        {"SITE_URL": "https://sigsentry.example.com:port"},
        {"SITE_URL": "https://sigsentry.example.com/?next=1"},
    ],
)
def test_a_sunset_before_the_deprecation_or_a_relative_site_url_is_refused(env):
    refused(SECRET | env, *env)


@pytest.mark.parametrize(
    ("env", "name", "expected"),
    [
        ({"REDIS_URL": "redis://127.0.0.1:6379/13"}, "REDIS_URL", "redis://127.0.0.1:6379/13"),
        ({"REDIS_URL": "rediss://:pw@redis:6380/"}, "REDIS_URL", "rediss://:pw@redis:6380/"),
        ({"REDIS_URL": "unix:///run/redis.sock?db=2"}, "REDIS_URL", "unix:///run/redis.sock?db=2"),
        ({"REDIS_URL": ""}, "REDIS_URL", ""),
        ({"HTTPS_ONLY": "TRUE"}, "HTTPS_ONLY", True),
        ({"HTTPS_ONLY": " Yes "}, "HTTPS_ONLY", True),
        ({"HTTPS_ONLY": "on"}, "HTTPS_ONLY", True),
        ({"HTTPS_ONLY": "0"}, "HTTPS_ONLY", False),
        ({"HTTPS_ONLY": "No"}, "HTTPS_ONLY", False),
        ({"HTTPS_ONLY": "OFF"}, "HTTPS_ONLY", False),
        ({"HTTPS_ONLY": "y"}, "HTTPS_ONLY", True),  # django-environ's true words stay true
        ({"HTTPS_ONLY": "ok"}, "HTTPS_ONLY", True),
        ({"DEBUG": "1"}, "DEBUG", True),
        ({"WEBHOOKS_ALLOW_PRIVATE": "true"}, "WEBHOOKS_ALLOW_PRIVATE", True),
        ({}, "WEBHOOKS_ALLOW_PRIVATE", False),
        ({"NUM_PROXIES": "2"}, "NUM_PROXIES", 2),
        ({}, "USAGE_FLUSH_SECONDS", 60),
        ({"USAGE_FLUSH_SECONDS": "0"}, "USAGE_FLUSH_SECONDS", 0),
        ({}, "USAGE_BATCH_SECONDS", 1.0),
        ({"USAGE_BATCH_SECONDS": "0"}, "USAGE_BATCH_SECONDS", 0.0),
        ({"USAGE_BATCH_SECONDS": "0.25"}, "USAGE_BATCH_SECONDS", 0.25),
        ({"EMAIL_URL": "smtp+tls://user:pw@smtp.internal:587"}, "EMAIL_HOST", "smtp.internal"),
        ({"JWT_SIGNING_KEY": "k1234" * 7}, "JWT_SIGNING_KEY", "k1234" * 7),
        ({"DEBUG": "true", "SECRET_KEY": "dev", "JWT_SIGNING_KEY": "dev"}, "DEBUG", True),
        (
            {"LEGACY_KEYS_SUNSET_AT": "2026-11-26T00:00:00Z"},  # the same moment: not earlier
            "LEGACY_KEYS_SUNSET_AT",
            "2026-11-26T00:00:00+00:00",
        ),
        ({}, "SITE_URL", "http://127.0.0.1:8000"),
        (
            {"SITE_URL": "https://example.com/sigsentry/"},
            "SITE_URL",
            "https://example.com/sigsentry",
        ),
    ],
)
def test_valid_values_are_still_read_as_before(env, name, expected):
    assert read_settings(SECRET | env, name)[name] == expected


def test_earlier_secret_keys_are_read_as_fallbacks_and_must_be_long():
    old = ["an-earlier-production-secret-key-0123456789", "an-even-older-secret-key-0123456789ab"]
    values = read_settings(
        SECRET | {"SECRET_KEY_FALLBACKS": f"{old[0]}, {old[1]},"}, "SECRET_KEY_FALLBACKS"
    )
    assert values == {"SECRET_KEY_FALLBACKS": old}
    assert read_settings(SECRET, "SECRET_KEY_FALLBACKS") == {"SECRET_KEY_FALLBACKS": []}
    message = refused(SECRET | {"SECRET_KEY_FALLBACKS": f"{old[0]},short"}, "SECRET_KEY_FALLBACKS")
    assert old[0] not in message


@pytest.mark.parametrize(
    ("url", "worker", "db"),
    [
        ("redis://127.0.0.1:6379/1", "gw0", 1),
        ("redis://127.0.0.1:6379/1", "gw3", 4),
        ("rediss://:pw@redis:6380", "gw1", 1),
        ("unix:///run/redis.sock?db=2", "gw2", 4),
    ],
)
def test_each_pytest_xdist_worker_empties_a_redis_database_of_its_own(url, worker, db):
    from redis.connection import parse_url

    from sigsentry.test_settings import _redis_url_of_worker

    moved = parse_url(_redis_url_of_worker(url, worker))
    assert moved.get("db") == db
    assert moved | {"db": None} == parse_url(url) | {"db": None}  # nothing else moves


def test_secrets_are_read_exactly_as_set_even_starting_with_a_dollar():
    """Found by an operator walkthrough: django-environ reads a value starting with `$` as
    another variable's name, so 2 % of Django's random keys were "not set" and `$PATH`
    became PATH's value."""
    key = "$k9x!@#" + "a" * 50
    fallback = "$bcdef" + "b" * 45
    values = read_settings(
        SECRET
        | {
            "SECRET_KEY": key,
            "SECRET_KEY_FALLBACKS": f"{fallback}, $PATH{'c' * 50}",
            "JWT_SIGNING_KEY": "$PATH" + "d" * 40,
            "METRICS_TOKEN": "$HOME" + "e" * 40,
        },
        "SECRET_KEY",
        "SECRET_KEY_FALLBACKS",
        "JWT_SIGNING_KEY",
        "METRICS_TOKEN",
    )
    assert values["SECRET_KEY"] == key
    assert values["SECRET_KEY_FALLBACKS"] == [fallback, "$PATH" + "c" * 50]
    assert values["JWT_SIGNING_KEY"] == "$PATH" + "d" * 40
    assert values["METRICS_TOKEN"] == "$HOME" + "e" * 40


# Found by a configuration audit: each of these started production without a word ------


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        (
            "SECRET_KEY",
            "django-insecure-dev-only-key-never-use-in-production-0123456789",
            "published",
        ),
        ("SECRET_KEY", "django-insecure-" + "q8#x!0pz" * 6, "published"),
        ("SECRET_KEY", "a" * 50, "too simple"),
        ("JWT_SIGNING_KEY", "abab" * 10, "too simple"),
        ("SECRET_KEY_FALLBACKS", "abab" * 10, "too simple"),
    ],
)
def test_a_published_or_trivial_secret_is_refused_without_debug(name, value, problem):
    line = refused(SECRET | {name: value}, name, problem)
    assert value not in line
    assert read_settings({"DEBUG": "true", name: value}, "DEBUG")["DEBUG"] is True


def test_a_published_key_may_be_a_fallback_while_it_is_rotated_away():
    """A review: refused there too, the deployments that ran on one could not rotate off it
    (their sealed secrets open only with it until `reseal_secrets`). check --deploy warns."""
    published = "django-insecure-" + "q8#x!0pz" * 6
    values = read_settings(SECRET | {"SECRET_KEY_FALLBACKS": published}, "SECRET_KEY_FALLBACKS")
    assert values["SECRET_KEY_FALLBACKS"] == [published]


def test_fallback_keys_separated_by_spaces_are_refused():
    keys = "first-old-secret-key-0123456789abcdef second-old-secret-key-0123456789abcdef"
    refused(SECRET | {"SECRET_KEY_FALLBACKS": keys}, "SECRET_KEY_FALLBACKS", "commas")


def test_allowed_hosts_are_read_without_the_spaces_around_them():
    values = read_settings(
        SECRET | {"ALLOWED_HOSTS": "a.example.com, b.example.com ,[::1]"}, "ALLOWED_HOSTS"
    )
    assert values["ALLOWED_HOSTS"] == ["a.example.com", "b.example.com", "[::1]"]


@pytest.mark.parametrize(
    "value",
    [
        "https://sigsentry.example.com",
        "sigsentry.example.com:443",
        "sigsentry.example.com/",
        "[::1]:8000",
        "user@sigsentry.example.com",
        "sigsentry .example.com",
    ],
)
def test_an_allowed_host_with_a_scheme_port_or_path_is_refused(value):
    refused(SECRET | {"ALLOWED_HOSTS": f"ok.example.com,{value}"}, "ALLOWED_HOSTS")


@pytest.mark.parametrize(
    "value",
    [
        "https://sigsentry.example.com\n",
        " https://sigsentry.example.com",
        "https://sigsentry.example.com/ ",
        "https://sigsentry.example.com#",
        "https://sigsentry.example.com?",
        "https://sigsentry.example.com/\tx",
    ],
)
def test_a_site_url_that_would_break_every_emailed_link_is_refused(value):
    refused(SECRET | {"SITE_URL": value}, "SITE_URL")


def test_a_site_url_with_a_user_and_password_is_refused_without_showing_them():
    value = "https://ops:hunter2@sigsentry.example.com"
    refused(
        SECRET | {"SITE_URL": value}, "SITE_URL", "without a user or password", hidden="hunter2"
    )


@pytest.mark.parametrize(
    "value",
    [
        "SigSentry <no-reply@sigsentry.example.com>\n",
        "no-reply",
        "a@b.example\r\nBcc: x@y.example",
        "a@x.example, b@y.example",
    ],
)
def test_a_sender_that_is_not_one_address_on_one_line_is_refused(value):
    refused(SECRET | {"DEFAULT_FROM_EMAIL": value}, "DEFAULT_FROM_EMAIL")


@pytest.mark.parametrize("url", ["consolemail://", "filemail:///tmp/sigsentry-mail"])
def test_mail_to_the_console_or_to_files_is_refused_without_debug(url):
    refused(SECRET | {"EMAIL_URL": url}, "EMAIL_URL", "DEBUG=true")
    assert read_settings({"DEBUG": "true", "EMAIL_URL": url}, "DEBUG")["DEBUG"] is True


@pytest.mark.parametrize("scheme", ["smtps", "smtp+tls", "smtp"])
def test_port_465_without_implicit_tls_is_refused(scheme):
    refused(
        SECRET | {"EMAIL_URL": f"{scheme}://u:hunter2@smtp.example.com:465"},
        "smtp+ssl",
        hidden="hunter2",
    )
    values = read_settings(
        SECRET | {"EMAIL_URL": "smtp+ssl://u:hunter2@smtp.example.com:465"}, "EMAIL_USE_SSL"
    )
    assert values["EMAIL_USE_SSL"] is True


@pytest.mark.parametrize(
    "token",
    [
        " " * 40,
        " " + "t0ken-of-forty-characters-0123456789abc",
        "t0ken-of-forty-characters-0123456789abc\n",
    ],
)
def test_a_metrics_token_of_spaces_or_with_spaces_at_its_ends_is_refused(token):
    refused(SECRET | {"METRICS_TOKEN": token}, "METRICS_TOKEN")


def test_a_usage_batch_interval_that_would_spin_is_refused():
    refused(SECRET | {"USAGE_BATCH_SECONDS": "0.0001"}, "USAGE_BATCH_SECONDS", "0.05")
    assert read_settings(SECRET | {"USAGE_BATCH_SECONDS": "0"}, "USAGE_BATCH_SECONDS") == {
        "USAGE_BATCH_SECONDS": 0
    }


def test_a_build_step_without_a_database_may_name_one_in_memory():
    """The refusal's hint for `collectstatic` in an image build (a review: DEBUG=true, the
    hint before, switches to unhashed static files and the image served 500s)."""
    without = {k: v for k, v in SECRET.items() if k != "DATABASE_URL"}
    database = read_settings(without | {"DATABASE_URL": "sqlite://:memory:"}, "DATABASES")
    assert database["DATABASES"]["default"]["NAME"] == ":memory:"
