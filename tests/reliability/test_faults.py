"""Fail closed: a database outage is a 503, never a success, an anonymous answer or a fake 401.

The outages are real: gunicorn reaches PostgreSQL through a TCP proxy that the
test cuts and restores; the SQLite variant overwrites the database file in
place. Redis outages are a closed port.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
import uuid
from contextlib import closing
from pathlib import Path

import pytest
from django.db import (
    DatabaseError,
    DataError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    connection,
    transaction,
)

from apps.accounts import services as account_services
from apps.accounts.mfa_login import issue_mfa_token
from apps.accounts.password_reset import make_reset_token
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from apps.apikeys.services import record_key_use, revoke_key
from core.errors import api_exception_handler
from core.permissions import Role
from tests.factories import PASSWORD, MembershipFactory, make_key
from tests.reliability.conftest import is_postgres
from tests.reliability.endpoints import api_endpoints, param_values
from tests.reliability.helpers import TcpProxy, bearer, call, closed_port
from tests.reliability.low_rate_settings import LOW_LIMIT
from tests.secretscanning.keys import SigningKey, write_keys

#: Bodies for the endpoints that need no credential: with the database down
#: each must still answer 503 (they all need the database for a real request).
PUBLIC_BODIES = {
    "signup": lambda ctx: {
        "email": f"new-{uuid.uuid4().hex[:8]}@example.com",
        "password": "a-long-enough-password-1",
        "organizationName": "New",
    },
    "login": lambda ctx: {"email": ctx["email"], "password": PASSWORD},
    "refresh": lambda ctx: {"refresh": ctx["refresh"]},
    "logout": lambda ctx: {"refresh": ctx["refresh"]},
    "leaked-keys": lambda ctx: {"keys": [ctx["key"]]},
    "login/2fa": lambda ctx: {"mfaToken": ctx["mfa_token"], "code": "123456"},
    "password-reset": lambda ctx: {"email": ctx["email"]},
    "password-reset/confirm": lambda ctx: {
        "token": ctx["reset_token"],
        "password": "a-long-enough-password-1",
    },
}


def _public_body(route: str, ctx: dict):
    for suffix, build in PUBLIC_BODIES.items():
        if route.rstrip("/").endswith(suffix):
            return build(ctx)
    raise AssertionError(f"add a realistic body for the public endpoint {route} to PUBLIC_BODIES")


def _public_request(route: str, ctx: dict) -> tuple[dict[str, str], object]:
    """(headers, body): GitHub's report is signed, so that it gets past the signature check."""
    if route.rstrip("/").endswith("secret-scanning/github"):
        body = json.dumps([{"token": ctx["key"], "type": "t", "url": "u", "source": "s"}])
        signer: SigningKey = ctx["github"]
        return {
            "Github-Public-Key-Identifier": signer.identifier,
            "Github-Public-Key-Signature": signer.sign(body.encode()),
        }, body.encode()
    return {}, _public_body(route, ctx)


def _assert_unavailable(reply, what: str) -> None:
    assert reply.status == 503, f"{what}: {reply.status} {reply.body[:300]!r}"
    assert reply.code == "SERVICE_UNAVAILABLE", what
    assert reply.json["error"]["message"], what
    assert int(reply.header("Retry-After")) > 0, what


def _outage_requests(ctx: dict):
    """(description, method, path, headers, body) for every /v1 endpoint, each credential."""
    credentials = {
        "secret key": bearer(ctx["key"]),
        "org key": {**bearer(ctx["org_key"]), "X-Project-Id": ctx["ids"]["project"]},
        "jwt": {**bearer(ctx["access"]), "X-Project-Id": ctx["ids"]["project"]},
        "unknown well-formed key": bearer(ctx["unknown_key"]),
    }
    for endpoint in api_endpoints():
        path = endpoint.path(param_values(endpoint.route, ctx["ids"]))
        for method in endpoint.methods:
            if endpoint.is_public:
                headers, body = (
                    _public_request(endpoint.route, ctx) if method != "get" else ({}, None)
                )
                yield f"{method.upper()} {path} (public)", method, path, headers, body
                continue
            for label, headers in credentials.items():
                body = {} if method in ("post", "put", "patch") else None
                yield f"{method.upper()} {path} with {label}", method, path, headers, body
    cookie = {"Cookie": f"ss_access={ctx['access']}"}
    yield "GET /v1/me with the session cookie", "get", "/v1/me", cookie, None


@pytest.fixture
def outage_context(transactional_db, organization, project, owner, tmp_path):
    from apps.apikeys.keyformat import generate

    github = SigningKey.new("outage-test")

    api_key, plaintext = make_key(KeyKind.SECRET, project=project, actor=owner)
    _org_key, org_plaintext = make_key(KeyKind.ORGANIZATION, organization=organization)
    pair = account_services.start_session(owner)
    return {
        "key": plaintext,
        "org_key": org_plaintext,
        "unknown_key": generate(KeyKind.SECRET),
        "access": pair.access,
        "refresh": pair.refresh,
        "email": owner.email,
        "github": github,
        "github_keys": str(write_keys(tmp_path / "github-keys.json", github)),
        "mfa_token": issue_mfa_token(owner),
        "reset_token": make_reset_token(owner),
        "ids": {
            "organization": str(organization.id),
            "project": str(project.id),
            "key": str(api_key.id),
            "user": str(owner.id),
        },
    }


def _check_outage(server_url: str, ctx: dict) -> None:
    for what, method, path, headers, body in _outage_requests(ctx):
        _assert_unavailable(
            call(server_url, method.upper(), path, headers=headers, body=body), what
        )
    page = call(server_url, "GET", "/", headers={"Cookie": f"ss_access={ctx['access']}"})
    assert page.status == 503
    assert page.header("Content-Type").startswith("text/html")
    assert b"temporarily unavailable" in page.body.lower()
    assert page.header("Retry-After")
    assert ctx["access"].encode() not in page.body


def _wait_until_ok(server_url: str, headers: dict[str, str], timeout: float = 15):
    deadline = time.monotonic() + timeout
    while True:
        reply = call(server_url, "GET", "/v1/me", headers=headers)
        if reply.status == 200 or time.monotonic() > deadline:
            return reply
        assert reply.status == 503, reply.body
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.skipif(not is_postgres(), reason="the PostgreSQL variant; SQLite has its own below")
def test_postgres_outage_answers_503_everywhere_and_recovers(outage_context, start_server):
    db = connection.settings_dict
    proxy = TcpProxy((db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432))).start()
    try:
        server = start_server(
            env={
                "DATABASE_URL": f"postgres://{db.get('USER') or 'root'}@127.0.0.1:{proxy.port}"
                f"/{db['NAME']}",
                "GITHUB_SECRET_SCANNING_KEYS": outage_context["github_keys"],
            }
        )
        for _ in range(4):  # warm both workers' persistent connections through the proxy
            assert call(server.url, "GET", "/v1/me", headers=bearer(outage_context["key"])).status
        assert proxy.connection_count >= 1

        proxy.stop()
        _check_outage(server.url, outage_context)

        proxy.start()
        assert _wait_until_ok(server.url, bearer(outage_context["key"])).status == 200
        me = call(server.url, "GET", "/v1/me", headers=bearer(outage_context["access"]))
        assert me.status == 200
        assert me.json["user"]["email"] == outage_context["email"]
    finally:
        proxy.stop()


@pytest.mark.slow
def test_sqlite_outage_answers_503_everywhere_and_recovers(
    outage_context, start_server, tmp_path: Path
):
    if is_postgres():
        pytest.skip("the SQLite variant of the outage test; PostgreSQL has its own above")
    # A private copy of the committed test database, which the test then breaks in place
    # (same inode, so connections that are already open see the damage too). Making the
    # directory unreadable would not do: the tests run as root, which ignores permissions.
    database = tmp_path / "outage.sqlite3"
    shutil.copyfile(connection.settings_dict["NAME"], database)
    server = start_server(
        env={
            "DATABASE_URL": f"sqlite:///{database}",
            "GITHUB_SECRET_SCANNING_KEYS": outage_context["github_keys"],
        }
    )
    assert call(server.url, "GET", "/v1/me", headers=bearer(outage_context["key"])).status == 200
    _wait_for_last_used_write(database)  # else its commit could rewrite the damaged header

    original = database.read_bytes()
    with database.open("r+b") as handle:
        handle.write(b"\0this is not an sqlite database\0" * (len(original) // 32 + 1))
    _check_outage(server.url, outage_context)

    with database.open("r+b") as handle:
        handle.write(original)
        handle.truncate()
    assert _wait_until_ok(server.url, bearer(outage_context["key"])).status == 200


def _wait_for_last_used_write(database: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with closing(sqlite3.connect(database)) as db:
            used = db.execute("SELECT count(*) FROM apikeys_apikey WHERE last_used_at IS NOT NULL")
            if used.fetchone()[0]:
                return
        time.sleep(0.05)
    raise AssertionError("the key's lastUsedAt was never written")


@pytest.fixture
def redis_down_server(start_server):
    return start_server(
        env={
            "REDIS_URL": f"redis://127.0.0.1:{closed_port()}/0",
            "DJANGO_SETTINGS_MODULE": "tests.reliability.low_rate_settings",
        }
    )


@pytest.mark.slow
def test_redis_outage_leaves_authentication_intact_and_throttling_open(
    transactional_db, project, owner, redis_down_server
):
    _key, plaintext = make_key(KeyKind.SECRET, project=project)
    revoked, revoked_plaintext = make_key(KeyKind.SECRET, project=project)
    revoke_key(actor=owner, api_key=revoked)
    url = redis_down_server.url

    assert call(url, "GET", "/v1/me", headers=bearer(plaintext)).status == 200
    reply = call(url, "GET", "/v1/me", headers=bearer(revoked_plaintext))
    assert (reply.status, reply.code) == (401, "KEY_REVOKED")
    # More failures than the server's THROTTLE_RATES allow: with the shared counter
    # unreachable nothing is throttled (fail-open) and nothing breaks.
    codes = {
        call(url, "GET", "/v1/me", headers=bearer(revoked_plaintext)).code
        for _ in range(LOW_LIMIT * 2)
    }
    assert codes == {"KEY_REVOKED"}
    assert call(url, "GET", "/v1/me", headers=bearer(plaintext)).status == 200


def _install_failing_last_used_trigger() -> None:
    with connection.cursor() as cursor:
        if is_postgres():
            cursor.execute(
                "CREATE FUNCTION reliability_refuse() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'last_used_at is read-only today'; END; $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                "CREATE TRIGGER reliability_refuse BEFORE UPDATE OF last_used_at ON "
                "apikeys_apikey FOR EACH ROW EXECUTE FUNCTION reliability_refuse()"
            )
        else:
            cursor.execute(
                "CREATE TRIGGER reliability_refuse BEFORE UPDATE OF last_used_at ON "
                "apikeys_apikey BEGIN SELECT RAISE(ABORT, 'last_used_at is read-only today'); END"
            )


@pytest.fixture
def failing_last_used_write(db):
    _install_failing_last_used_trigger()


def test_failed_last_used_write_neither_fails_the_request_nor_poisons_the_transaction(
    failing_last_used_write, project, api_client, caplog
):
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)

    response = api_client.get("/v1/me", HTTP_AUTHORIZATION=f"Bearer {plaintext}")

    assert response.status_code == 200
    assert "could not record last use" in caplog.text
    api_key.refresh_from_db()
    assert api_key.last_used_at is None  # the write really failed
    with transaction.atomic():
        record_key_use(api_key, None)
        # Still usable: the failed UPDATE was rolled back to its savepoint.
        assert ApiKey.objects.filter(pk=api_key.pk).exists()
        MembershipFactory(organization=project.organization, role=Role.MEMBER)


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (OperationalError("connection refused"), 503, "SERVICE_UNAVAILABLE"),
        (InterfaceError("connection already closed"), 503, "SERVICE_UNAVAILABLE"),
        (DatabaseError("file is not a database"), 503, "SERVICE_UNAVAILABLE"),
        (DataError("value too long for type character varying(254)"), 400, "VALIDATION_ERROR"),
    ],
)
def test_database_errors_are_outages_unless_a_value_was_refused(error, status, code):
    response = api_exception_handler(error, {})
    assert (response.status_code, response.data["error"]["code"]) == (status, code)
    assert ("Retry-After" in response) == (status == 503)


class _Sqlstate(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def _with_sqlstate(error: Exception, sqlstate: str) -> Exception:
    error.__cause__ = _Sqlstate(sqlstate)  # as Django wraps psycopg's error
    return error


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (IntegrityError("duplicate key value violates unique constraint"), "conflict"),
        (_with_sqlstate(OperationalError("deadlock detected"), "40P01"), "conflict"),
        (_with_sqlstate(OperationalError("could not serialize access"), "40001"), "conflict"),
        (_with_sqlstate(OperationalError("connection refused"), "08001"), "unavailable"),
        (OperationalError("connection refused"), "unavailable"),
    ],
)
def test_a_race_lost_is_a_503_logged_as_a_conflict_not_an_outage(error, line, caplog):
    """A race audit: two races' errors (a unique violation, a deadlock) were logged as
    "database unavailable", paging for an outage and hiding the race."""
    response = api_exception_handler(error, {})
    assert response.status_code == 503 and "Retry-After" in response
    expected = {
        "conflict": "database conflict with a concurrent change",
        "unavailable": ("database unavailable"),
    }[line]
    assert expected in caplog.text
    assert ("database unavailable" in caplog.text) == (line == "unavailable")
