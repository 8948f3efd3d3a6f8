"""No secret in logs, URLs, error bodies or the database; one structured line per auth decision.

`test_a_full_run_logs_no_secret` drives signup, logins (good and bad
passwords), refreshes, minting, rolling, key use (good, bad, revoked),
leak reports, logout, the dashboard and the admin, while every record of
every logger is captured at DEBUG; then it looks for each plaintext key, its
random part, its digest, each JWT (and its signature), and each password in
the records' messages, arguments, extra fields and formatted output.
"""

from __future__ import annotations

import json
import logging
import re
import runpy
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from secrets import token_urlsafe
from urllib.parse import urlencode

import pyotp
import pytest
from django.apps import apps
from django.conf import settings as django_settings
from django.test import Client, override_settings
from gunicorn.config import Config
from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from apps.accounts.models import User
from apps.apikeys import keyformat
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from core.logging import JsonFormatter
from core.permissions import ALL_PERMISSIONS
from tests.conftest import access_token_for
from tests.factories import PASSWORD
from tests.outbound import Receiver
from tests.reliability.helpers import call
from tests.servers import free_port
from tests.tasks import run_ready_tasks

HIGH_RATES = override_settings(
    THROTTLE_RATES={scope: (10_000, 60) for scope in django_settings.THROTTLE_RATES}
)
SIGNUP_PASSWORD = "Tr0ub4dor-and-3-horses"
NEW_PASSWORD = "another-secret-Pa55phrase"
WRONG_PASSWORD = "wrong-but-still-secret-9"
ADMIN_PASSWORD = "operators-only-Pa55word"
_URL_ATTRIBUTE = re.compile(rb"""(?:href|action|src)\s*=\s*["']([^"']*)["']""")


@dataclass
class Secrets:
    values: dict[str, str] = field(default_factory=dict)

    def key(self, plaintext: str) -> None:
        assert plaintext, "expected a key"
        self.values[f"key {plaintext[:12]}"] = plaintext
        prefix = next(
            p
            for p in (*keyformat.KIND_BY_PREFIX, *keyformat.LEGACY_PREFIXES)
            if plaintext.startswith(p)
        )
        random_part = plaintext[len(prefix) :]
        if plaintext.startswith(tuple(keyformat.KIND_BY_PREFIX)):
            random_part = random_part[: keyformat.RANDOM_LENGTH]
        self.values[f"random part of {plaintext[:12]}"] = random_part
        self.values[f"digest of {plaintext[:12]}"] = keyformat.digest(plaintext)

    def token(self, jwt: str) -> None:
        assert jwt and jwt.count(".") == 2, "expected a JWT"
        self.values[f"jwt {jwt[-8:]}"] = jwt
        self.values[f"jwt signature {jwt[-8:]}"] = jwt.rsplit(".", 1)[1]

    def password(self, password: str) -> None:
        self.values[f"password {password[:3]}"] = password

    def found_in(self, text: str) -> list[str]:
        return [name for name, value in self.values.items() if value in text]


class Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: dict[int, logging.LogRecord] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.records[id(record)] = record


@pytest.fixture
def every_log_record():
    """Every record of every logger, at DEBUG, for the duration of the test."""
    collector = Collector()
    names = ["", "django", "django.request", "django.server", "django.security", "gunicorn"]
    names += list(logging.Logger.manager.loggerDict)
    loggers = {name: logging.getLogger(name) for name in names}
    saved = {name: logger.level for name, logger in loggers.items()}
    for logger in loggers.values():
        logger.addHandler(collector)
        logger.setLevel(logging.DEBUG)
    yield collector.records
    for name, logger in loggers.items():
        logger.removeHandler(collector)
        logger.setLevel(saved[name])


def _texts_of(record: logging.LogRecord) -> list[str]:
    texts = [str(record.msg), record.getMessage(), JsonFormatter().format(record)]
    args = record.args if isinstance(record.args, tuple) else (record.args,)
    texts += [repr(arg) for arg in args]
    texts += [repr(value) for value in record.__dict__.values()]
    if record.exc_info:
        texts.append(logging.Formatter().formatException(record.exc_info))
    return texts


def _json(response) -> dict:
    return json.loads(response.content)


def _api(client: Client, method: str, path: str, token: str | None = None, body=None, **extra):
    if token is not None:
        extra["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    if body is not None:
        return getattr(client, method)(
            path, json.dumps(body), content_type="application/json", **extra
        )
    return getattr(client, method)(path, **extra)


class Run:
    """Every response of the scenario, to check error bodies and URLs too."""

    def __init__(self, client: Client, secrets: Secrets) -> None:
        self.client = client
        self.secrets = secrets
        self.responses = []

    def api(self, method, path, token=None, body=None, **extra):
        response = _api(self.client, method, path, token, body, **extra)
        self.responses.append(response)
        return response

    def page(self, method, path, data=None):
        response = getattr(self.client, method)(path, data or {})
        self.responses.append(response)
        return response


def _nonce(page) -> str:
    match = re.search(rb'name="nonce" value="([^"]+)"', page.content)
    assert match, "the key page has a create form with a nonce"
    return match.group(1).decode()


def run_scenario(run: Run) -> None:
    secrets = run.secrets
    secrets.password(SIGNUP_PASSWORD)
    secrets.password(NEW_PASSWORD)
    secrets.password(WRONG_PASSWORD)
    secrets.password(ADMIN_PASSWORD)

    signup = run.api(
        "post",
        "/v1/auth/signup",
        body={"email": "ada@example.com", "password": SIGNUP_PASSWORD, "organizationName": "Ada"},
    )
    assert signup.status_code == 201, signup.content
    body = _json(signup)
    secrets.token(body["access"])
    secrets.token(body["refresh"])
    org_id = body["organization"]["id"]
    run.client.cookies.clear()

    assert run.api("post", "/v1/auth/signup", body={"email": "bad", "password": NEW_PASSWORD})
    failed = run.api(
        "post", "/v1/auth/login", body={"email": "ada@example.com", "password": WRONG_PASSWORD}
    )
    assert failed.status_code == 401
    run.api(
        "post", "/v1/auth/login", body={"email": "nobody@example.com", "password": NEW_PASSWORD}
    )
    login = run.api(
        "post", "/v1/auth/login", body={"email": "ada@example.com", "password": SIGNUP_PASSWORD}
    )
    assert login.status_code == 200
    run.client.cookies.clear()
    access, refresh = _json(login)["access"], _json(login)["refresh"]
    secrets.token(access)
    secrets.token(refresh)
    rotated = run.api("post", "/v1/auth/refresh", body={"refresh": refresh})
    assert rotated.status_code == 200
    secrets.token(_json(rotated)["access"])
    secrets.token(_json(rotated)["refresh"])
    access = _json(rotated)["access"]
    assert run.api("post", "/v1/auth/refresh", body={"refresh": refresh}).status_code == 401
    assert run.api("get", "/v1/me", token=refresh).status_code == 401

    project = run.api(
        "post", f"/v1/organizations/{org_id}/projects", token=access, body={"name": "Web"}
    )
    assert project.status_code == 201, project.content
    project_id = _json(project)["id"]

    keys = {}
    for kind, path in (
        ("sdk", f"/v1/projects/{project_id}/sdk-keys"),
        ("secret", f"/v1/projects/{project_id}/api-keys"),
        ("org", f"/v1/organizations/{org_id}/api-keys"),
    ):
        permissions = None if kind == "sdk" else list(ALL_PERMISSIONS)
        body = {"name": kind, **({"permissions": permissions} if permissions else {})}
        minted = run.api("post", path, token=access, body=body)
        assert minted.status_code == 201, minted.content
        secrets.key(_json(minted)["key"])
        keys[kind] = (_json(minted)["id"], _json(minted)["key"], path)

    key_id, secret_key, path = keys["secret"]
    rolled = run.api("post", f"{path}/{key_id}/roll", token=access, body={"graceSeconds": 60})
    assert rolled.status_code == 201
    secrets.key(_json(rolled)["key"])
    secret_key = _json(rolled)["key"]
    _, org_key, _ = keys["org"]
    _, sdk_key, _ = keys["sdk"]
    tampered = secret_key[:-1] + ("A" if secret_key[-1] != "A" else "B")
    secrets.key(tampered)

    project_header = {"HTTP_X_PROJECT_ID": project_id}
    for token in (secret_key, sdk_key, access):
        assert run.api("get", "/v1/me", token=token).status_code == 200
        run.api(
            "post", "/v1/analyses", token=token, body={"title": "t", "input": "i"}, **project_header
        )
    assert run.api("get", "/v1/analyses", token=org_key, **project_header).status_code == 200
    run.api("get", "/v1/analyses", token=org_key)  # PROJECT_ID_REQUIRED
    run.api("post", f"/v1/projects/{project_id}/api-keys", token=secret_key, body={"name": "x"})
    for bad in (tampered, secret_key + "x", f"Token {secret_key}", secret_key.upper()):
        run.api("get", "/v1/me", HTTP_AUTHORIZATION=bad if " " in bad else f"Bearer {bad}")
    run.api("get", "/v1/me", HTTP_AUTHORIZATION=f"Bearer {secret_key}", HTTP_ORIGIN="https://x")

    rolled_over = keys["secret"][1]  # the key before the roll, still in its grace period
    leaked = run.api(
        "post", "/v1/leaked-keys", body={"keys": [sdk_key, rolled_over, tampered, "junk"]}
    )
    assert leaked.status_code == 202
    assert run.api("get", "/v1/me", token=rolled_over).status_code == 401
    assert run.api("get", "/v1/me", token=sdk_key).status_code == 200  # flagged, not revoked
    revoke = run.api("post", f"{path}/{_json(rolled)['id']}/revoke", token=access)
    assert revoke.status_code == 200
    assert run.api("get", "/v1/me", token=secret_key).status_code == 401

    # The dashboard: log in with the form, mint a key on the page, change the password.
    run.page("get", "/login/")
    logged_in = run.page(
        "post", "/login/", {"email": "ada@example.com", "password": SIGNUP_PASSWORD}
    )
    assert logged_in.status_code == 302
    for name in ("ss_access", "ss_refresh"):
        secrets.token(run.client.cookies[name].value)
    keys_page = run.page("get", f"/projects/{project_id}/api-keys/")
    assert keys_page.status_code == 200
    shown = run.page(
        "post",
        f"/projects/{project_id}/api-keys/",
        {"name": "from the page", "permissions": ["analysis:read"], "nonce": _nonce(keys_page)},
    )
    minted_on_page = re.search(rb"ss_secret_[0-9A-Za-z]{38}", shown.content)
    assert minted_on_page, "the page shows the new key once"
    secrets.key(minted_on_page.group().decode())
    run.page("get", "/")
    run.page("post", "/logout/")
    run.page("post", "/login/", {"email": "ada@example.com", "password": WRONG_PASSWORD})

    # The admin: an operator logs in and revokes a key with the admin action.
    User.objects.create_superuser("ops@example.com", ADMIN_PASSWORD)
    admin_client = Client()
    admin_login = admin_client.post(
        "/admin/login/?next=/admin/", {"username": "ops@example.com", "password": ADMIN_PASSWORD}
    )
    assert admin_login.status_code == 302
    org_key_id = keys["org"][0]
    admin_client.get("/admin/apikeys/apikey/")
    admin_client.get(f"/admin/apikeys/apikey/{org_key_id}/change/")
    admin_client.post(
        "/admin/apikeys/apikey/", {"action": "revoke", "_selected_action": [org_key_id]}
    )
    assert ApiKey.objects.get(id=org_key_id).revoked_at is not None
    assert run.api("get", "/v1/me", token=org_key).status_code == 401
    run.api("post", "/v1/auth/logout", token=access, body={"refresh": _json(rotated)["refresh"]})
    assert run.api("get", "/v1/me", token=access).status_code == 401


@pytest.fixture
def scenario(db, every_log_record):
    secrets = Secrets()
    run = Run(Client(REMOTE_ADDR="198.51.100.77"), secrets)
    with HIGH_RATES:
        run_scenario(run)
    return run, every_log_record


def test_a_full_run_logs_no_secret(scenario):
    run, records = scenario
    assert len(run.secrets.values) > 30
    leaks = {
        f"{record.name}: {record.getMessage()[:120]}": found
        for record in records.values()
        for found in [sorted({s for text in _texts_of(record) for s in run.secrets.found_in(text)})]
        if found
    }
    assert leaks == {}


def test_every_request_is_one_structured_line_with_its_authentication_decision(scenario):
    _run, records = scenario
    lines = [r for r in records.values() if r.name == "sigsentry.access"]
    decisions = [r for r in lines if hasattr(r, "auth_outcome")]
    assert len(decisions) >= 15
    # Pages carry no decision: only credentialed /v1 requests do.
    assert all(r.route.startswith("/v1/") for r in decisions)
    assert any(not r.route.startswith("/v1/") for r in lines)
    for record in decisions:
        line = json.loads(JsonFormatter().format(record))
        assert line["auth_outcome"], line
        assert line["client_ip"] == "198.51.100.77", line
        if line["auth_outcome"] == "ok":
            assert ("key_id" in line and "key_prefix" in line) or "user_id" in line, line
    outcomes = {r.auth_outcome for r in decisions}
    assert {
        "ok",
        "KEY_INVALID",
        "KEY_REVOKED",
        "AUTHORIZATION_MALFORMED",
        "TOKEN_INVALID",
    } <= outcomes


def test_no_secret_in_responses_urls_or_error_bodies(scenario):
    run, _records = scenario
    for response in run.responses:
        location = response.get("Location", "")
        assert not run.secrets.found_in(location), location
        if response.status_code >= 400:
            assert not run.secrets.found_in(response.content.decode(errors="replace"))
        for url in _URL_ATTRIBUTE.findall(response.content):
            assert not run.secrets.found_in(url.decode(errors="replace")), url


def test_no_secret_is_stored_in_the_database(scenario):
    run, _records = scenario
    passwords_and_tokens = Secrets(
        {k: v for k, v in run.secrets.values.items() if not k.startswith("digest")}
    )
    for model in apps.get_models():
        for row in model.objects.all().values():
            text = " ".join(str(value) for value in row.values())
            assert not passwords_and_tokens.found_in(text), (model.__name__, row)


@pytest.mark.slow
def test_gunicorn_access_and_error_logs_hold_no_secret(
    transactional_db, project, owner, start_server
):
    from apps.accounts import services as account_services
    from apps.accounts.password_reset import make_reset_token
    from tests.factories import PASSWORD, make_key

    server = start_server(env={"GUNICORN_CMD_ARGS": "--access-logfile - --error-logfile -"})
    secrets = Secrets()
    _key, plaintext = make_key(KeyKind.SECRET, project=project)
    secrets.key(plaintext)
    secrets.password(PASSWORD)
    pair = account_services.start_session(owner)
    secrets.token(pair.access)
    secrets.token(pair.refresh)

    call(server.url, "GET", "/v1/me", headers={"Authorization": f"Bearer {plaintext}"})
    call(server.url, "GET", "/v1/me", headers={"Authorization": f"Bearer {plaintext}x"})
    call(server.url, "GET", "/v1/me", headers={"Authorization": f"Bearer {pair.access}"})
    login = call(
        server.url, "POST", "/v1/auth/login", body={"email": owner.email, "password": PASSWORD}
    )
    assert login.status == 200
    secrets.token(login.json["access"])
    secrets.token(login.json["refresh"])
    form = f"email={owner.email}&password={PASSWORD}".encode()
    page = call(
        server.url,
        "POST",
        "/login/",
        body=form,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert page.status in (200, 302, 403)
    call(server.url, "POST", "/v1/leaked-keys", body={"keys": [plaintext]})
    call(server.url, "GET", "/v1/me", headers={"Authorization": f"Bearer {plaintext}"})
    # Token links opened, as a browser does: the page, a Referer naming it, the way back.
    reset, invitation = make_reset_token(owner), token_urlsafe(32)
    secrets.values |= {"reset token": reset, "invitation token": invitation}
    for link in (f"/reset/{reset}/", f"/invitations/{invitation}/"):
        opened = call(server.url, "GET", link)
        assert opened.header("Referrer-Policy") == "strict-origin"  # its CSS gets no path
        call(server.url, "GET", "/static/css/app.css", headers={"Referer": server.url + link})
        call(server.url, "GET", "/login/?" + urlencode({"next": link}))
        if opened.status == 302:  # kept in a sealed cookie: the page it redirects to, with it
            [(name, value)] = opened.cookies.items()
            secrets.values[f"{name} cookie"] = value
            landed = call(
                server.url, "GET", opened.header("Location"), headers={"Cookie": f"{name}={value}"}
            )
            assert landed.status == 200
    server.stop()

    log = server.log_path.read_text()
    assert '"GET /v1/me HTTP/1.1" 200' in log  # the access log was written
    assert secrets.found_in(log) == []


def _encoded(token: str) -> str:
    """`token` with one of its letters %-encoded, as a client may send it (`Ab%43d...`)."""
    at = next(i for i, c in enumerate(token) if c.isalpha() and i > 3)
    return f"{token[:at]}%{ord(token[at]):02X}{token[at + 1 :]}"


#: Ways a token link reaches gunicorn that once hid its secret from the mask, by name:
#: (the request's target, extra headers) or the raw bytes of a request gunicorn refuses.
_LINK_FORMS = {
    "%-encoded letter of the token, in the path": lambda t: (f"/reset/{_encoded(t)}/", {}),
    "%-encoded letter of the token, in a next= query": lambda t: (
        f"/login/?next=%2Finvitations%2F{_encoded(t)}%2F",
        {},
    ),
    "%-encoded letter of the token, in a Referer": lambda t: (
        "/static/css/app.css",
        {"Referer": f"https://sigsentry.example/reset/{_encoded(t)}/"},
    ),
    "twice-encoded link, in a next= query": lambda t: (
        f"/login/?next=%252Freset%252F{t}%252F",
        {},
    ),
    "twice-encoded link, in a Referer": lambda t: (
        "/static/css/app.css",
        {"Referer": f"https://sigsentry.example/login/?next=%252Finvitations%252F{t}%252F"},
    ),
    "%-encoded letters of the path's word": lambda t: (f"/%72eset/{t}/", {}),
    "%-encoded letters of the path's word, mixed case": lambda t: (f"/%49nvi%74aTions/{t}/", {}),
    "an extra slash before the token": lambda t: (f"/invitations//{t}/", {}),
    # Refused before the application runs; gunicorn's error log quotes the request line.
    "a link in a request line gunicorn refuses": lambda t: (
        f"GET /reset/{t}/\x7f HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    ),
}


def _any_part_of(token: str, text: str) -> bool:
    """Whether 10 characters of `token` in a row are in `text` (a token cut by a mask
    or by a %-encoded character shows the rest of its secret)."""
    return any(token[i : i + 10] in text for i in range(len(token) - 9))


def _send(server, request: bytes) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(request)
        while sock.recv(65536):
            pass


@pytest.mark.slow
def test_gunicorn_logs_no_token_however_its_link_is_encoded(transactional_db, start_server):
    server = start_server(env={"GUNICORN_CMD_ARGS": "--access-logfile - --error-logfile -"})
    tokens = {name: token_urlsafe(32) for name in _LINK_FORMS}
    for name, form in _LINK_FORMS.items():
        request = form(tokens[name])
        if isinstance(request, bytes):
            _send(server, request)
        else:
            target, headers = request
            call(server.url, "GET", target, headers=headers)
    call(server.url, "GET", "/login/?next=%2Fv1%2Fme&note=100%25")
    server.stop()

    log = server.log_path.read_text()
    assert [name for name, token in tokens.items() if _any_part_of(token, log)] == []
    assert "GET /reset/…/ HTTP/1.1" in log  # the line is written, its secret masked
    assert "Invalid request from ip=127.0.0.1: Invalid HTTP request line: 'GET /reset/…" in log
    assert '"GET /login/?next=%2Fv1%2Fme&note=100%25 HTTP/1.1" 200' in log  # as it came


@pytest.mark.slow
def test_gunicorn_writes_a_clients_control_characters_escaped(transactional_db, start_server):
    """gunicorn passes header bytes 0x80-0x9F as C1 characters and writes the line as UTF-8:
    a User-Agent holding CSI (0x9B) or OSC (0x9D) drove the terminal that showed the log
    (clear the screen, plant a link: found by a Unicode audit)."""
    server = start_server(env={"GUNICORN_CMD_ARGS": "--access-logfile - --error-logfile -"})
    agent = b"evil\x9b2J\x9d8;;https://x.example\x9c\tok"
    _send(
        server,
        b"GET /healthz/nope HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: " + agent + b"\r\n"
        b"Connection: close\r\n\r\n",
    )
    server.stop()

    log = server.log_path.read_text()
    assert '"evil\\x9b2J\\x9d8;;https://x.example\\x9c\\x09ok"' in log
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f]", log)


@pytest.fixture
def gunicorn_logger(tmp_path):
    """gunicorn.conf.py's logger class, writing its error log to a file."""
    conf = runpy.run_path(str(Path(__file__).resolve().parents[2] / "gunicorn.conf.py"))
    cfg = Config()
    cfg.set("errorlog", str(tmp_path / "error.log"))
    log = conf["logger_class"](cfg)
    yield log, tmp_path / "error.log"
    for handler in list(log.error_log.handlers):  # the logger is process-wide
        log.error_log.removeHandler(handler)
        handler.close()
    for masker in list(log.error_log.filters):
        log.error_log.removeFilter(masker)


def test_gunicorn_error_log_masks_a_token_link_in_a_message_and_its_traceback(gunicorn_logger):
    log, path = gunicorn_logger
    token = token_urlsafe(32)
    try:
        raise ValueError(f"cannot answer /invitations/{token}/")
    except ValueError:
        log.exception("Error handling request %s %s", "GET", f"/reset/{_encoded(token)}/")

    text = path.read_text()
    assert not _any_part_of(token, text)
    assert "Error handling request GET /reset/…/" in text
    assert "ValueError: cannot answer /invitations/…/" in text
    assert text.count("\n") > 3  # the traceback keeps its lines


@pytest.mark.parametrize(
    ("value", "written"),
    [
        # a link where a path starts: masked
        (
            "GET /v1/invitations/s3cretT0ken/accept HTTP/1.1",
            "GET /v1/invitations/…/accept HTTP/1.1",
        ),
        ("/reset/s3cretT0ken/", "/reset/…/"),
        # no secret in it: written as it came
        ("GET /orgs/0b1c/invitations/9f2e/cancel/ HTTP/1.1", None),
        ("GET /v1/keys?x=%2525252541 HTTP/1.1", None),  # over-encoded, no link: not blanked
        # over-encoded with a link: masked as it is, not blanked
        (
            "GET /login/?next=%25252525252Freset%25252525252Fs3cretT0ken%25252525252F HTTP/1.1",
            "GET /login/?next=%25252525252Freset%25252525252F…%25252525252F HTTP/1.1",
        ),
        # a credential a client put in a URL: its prefix kept, the rest masked
        (
            f"GET /v1/me?api_key={'ss_secret_' + 'A1' * 19} HTTP/1.1",
            "GET /v1/me?api_key=… HTTP/1.1",
        ),
        (f"GET /v1/x/{'ss_org_' + 'b2' * 19}/y HTTP/1.1", "GET /v1/x/ss_org_…/y HTTP/1.1"),
        (f"GET /v1/me?k=%73s_pub_{'C3' * 19} HTTP/1.1", "GET /v1/me?k=ss_pub_… HTTP/1.1"),
        (
            "https://app.example/?t=eyJhbGciOiJI.eyJzdWIiOiIx.c2lnbmF0dXJl",
            "https://app.example/?t=…",
        ),
        (
            "GET /v1/auth/password-reset/confirm?token=abc.def HTTP/1.1",
            "GET /v1/auth/password-reset/confirm?token=… HTTP/1.1",
        ),
        (
            "GET /x?user=a&password=hunter2&next=%2Fv1 HTTP/1.1",
            "GET /x?user=a&password=…&next=/v1 HTTP/1.1",
        ),
        # found by a review: an escape before the secret (the mask ran on the %-encoded
        # text), a first parameter, an over-encoded line; and names that are no key
        (
            f"GET /v1/me?k=%22{'ss_secret_' + 'A1' * 19} HTTP/1.1",
            "GET /v1/me?k=%22ss_secret_… HTTP/1.1",
        ),
        (f'"{"ss_org_" + "A1" * 19}"', "%22ss_org_…%22"),
        (f"Bearer\t{'ss_secret_' + 'A1' * 19}", "Bearer%09ss_secret_…"),
        ("GET /x?t=%22eyJhbGciOiJI.eyJzdWIiOiIx.c2lnbmF0dXJl HTTP/1.1", "GET /x?t=%22… HTTP/1.1"),
        ("token=abc.def&x=1", "token=…&x=1"),
        (
            "GET /x?password=hunter2&n=%2525252525252F HTTP/1.1",
            "GET /x?password=…&n=%2525252525252F HTTP/1.1",
        ),
        (
            "GET /login/?next=%22/reset/s3cretT0ken/ HTTP/1.1",
            "GET /login/?next=%22/reset/…/ HTTP/1.1",
        ),
        # more names for a secret (found by the observability audit)
        (
            "GET /x?pass=a&pwd=b&otp=123456&mfa=c&sessionid=d&sig=e&q=f HTTP/1.1",
            "GET /x?pass=…&pwd=…&otp=…&mfa=…&sessionid=…&sig=…&q=f HTTP/1.1",
        ),
        ("GET /static/img/tb_logo.png HTTP/1.1", None),
        ("    frame = tb.tb_frame", None),
        ("GET /v1/keys?granularity=hour&limit=5 HTTP/1.1", None),
        ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0", None),
    ],
)
def test_gunicorn_masks_token_links_and_nothing_else(value, written):
    conf = runpy.run_path(str(Path(__file__).resolve().parents[2] / "gunicorn.conf.py"))

    assert conf["_mask_token_links"](value) == (value if written is None else written)


#: What `_TOKEN_IN_URL` masks, as it was before a `//host` was looked for only where a run
#: of slashes begins.
TOKEN_LINK_FROM_EVERY_SLASH = re.compile(
    r"((?:^|[\s\"'=?&]|//[^/\s\"]*)(?:/v1)?/+(?:reset|invitations)/+)[^/?&#\s\"]+",
    re.I | re.A,
)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.sampled_from(["/", "//", "reset", "invitations", "v1", "h", " ", "=", "?", '"', "."]),
        max_size=12,
    ).map("".join)
)
def test_gunicorn_masks_token_links_as_it_did_from_every_slash(value):
    conf = runpy.run_path(str(Path(__file__).resolve().parents[2] / "gunicorn.conf.py"))

    assert conf["_TOKEN_IN_URL"].sub("\\1…", value) == TOKEN_LINK_FROM_EVERY_SLASH.sub(
        "\\1…", value
    )


@pytest.mark.parametrize("line", ["/" * 16_000, "=" + "/" * 16_000, "//h" * 6_000])
def test_gunicorn_masks_a_long_run_of_slashes_reading_it_once(line):
    """Found by the DoS audit: gunicorn logs an invalid request's header name, and every
    such line names `ip=`, which turns the masking on; 16,000 slashes took 1.7 s of CPU
    before the 400 went out, a thousand times the bound."""
    conf = runpy.run_path(str(Path(__file__).resolve().parents[2] / "gunicorn.conf.py"))
    started = time.process_time()
    conf["_mask_lines"](f"Invalid request from ip=192.0.2.1: Invalid header name '{line}'")
    assert time.process_time() - started < 0.5


@pytest.mark.slow
def test_gunicorn_logs_no_credential_a_client_put_in_a_url(transactional_db, start_server, project):
    """The API reads credentials from `Authorization` only; a client that put its key or
    token in a query, or a page whose URL held one (a Referer), must not put it in the log."""
    from apps.apikeys.keyformat import KeyKind
    from tests.factories import make_key

    _key, plaintext = make_key(KeyKind.SECRET, project=project)
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJsb2ctdGVzdCJ9.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"
    fmt = '%(h)s "%(r)s" %(s)s "%(f)s" "%(a)s" "%({x-api-key}i)s"'
    server = start_server(
        env={
            "GUNICORN_CMD_ARGS": f"--access-logfile - --error-logfile - --access-logformat '{fmt}'"
        }
    )
    call(server.url, "GET", f"/v1/me?api_key={plaintext}")
    call(server.url, "GET", "/v1/me?access_token=" + jwt)
    call(
        server.url,
        "GET",
        "/static/css/app.css",
        headers={"Referer": f"https://x.example/?token={jwt}"},
    )
    call(server.url, "GET", "/v1/me", headers={"X-Api-Key": plaintext, "User-Agent": plaintext})
    server.stop()

    log = server.log_path.read_text()
    assert '"GET /v1/me?api_key=… HTTP/1.1" 401' in log  # the line is written, its secret masked
    assert not _any_part_of(plaintext.removeprefix("ss_secret_"), log)
    assert not _any_part_of(jwt.removeprefix("eyJ"), log)


def test_gunicorn_masks_every_key_prefix_the_service_knows():
    """gunicorn.conf.py runs before Django and cannot import apps.apikeys.keyformat, so it
    writes the prefixes again: a prefix added there must be masked here too."""
    mask = runpy.run_path(str(Path(__file__).resolve().parents[2] / "gunicorn.conf.py"))[
        "_mask_token_links"
    ]
    keys = [(kind.prefix, keyformat.generate(kind)) for kind in KeyKind]
    keys += [(p, f"{p}{token_urlsafe(24)}") for p in keyformat.LEGACY_PREFIXES]

    for prefix, key in keys:
        assert mask(f"GET /v1/me?k={key} HTTP/1.1") == f"GET /v1/me?k={prefix}… HTTP/1.1"


URL_TOKEN = "query-secret-of-the-receiver-7Qx"
REFUSED_URL_PASSWORD = "url-password-never-kept-3Zr"


def test_webhook_failures_and_two_factor_logins_log_no_secret(
    owner, organization, settings, every_log_record
):
    """What the full run leaves out (found by the observability audit): a webhook's signing
    secret and a secret in its URL, through a refused URL with a password, its failing
    deliveries in the worker (a closed port, a 500) and their retries; two-factor set-up and
    logins with a wrong code, a right one and a recovery code (the TOTP secret, codes, the
    mfaToken). No line of the web or the worker holds any of them. (`every_log_record` last:
    the user factory logs the fixture's password at DEBUG.)"""
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    found = Secrets()
    access = access_token_for(owner)
    found.token(access)
    found.password(URL_TOKEN)
    found.password(REFUSED_URL_PASSWORD)
    client = APIClient(REMOTE_ADDR="198.51.100.78")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    hooks = f"/v1/organizations/{organization.pk}/webhooks"
    refused = client.post(
        hooks,
        {"url": f"http://u:{REFUSED_URL_PASSWORD}@127.0.0.1:9/h", "events": ["key.minted"]},
        format="json",
    )
    assert refused.status_code == 400
    failing = Receiver(status=500)
    try:
        for url in (f"http://127.0.0.1:{free_port()}/h?token={URL_TOKEN}", failing.url):
            made = client.post(hooks, {"url": url, "events": ["key.minted"]}, format="json")
            assert made.status_code == 201, made.content
            found.values[f"webhook secret {url[-6:]}"] = made.json()["secret"]
        minted = client.post(
            f"/v1/organizations/{organization.pk}/api-keys",
            {"name": "hooked", "permissions": ["analysis:read"]},
            format="json",
        )
        assert minted.status_code == 201, minted.content
        found.key(minted.json()["key"])
        run_ready_tasks()  # both attempts fail, in the worker's code
        assert len(failing.requests) == 1
    finally:
        failing.stop()

    secret = client.post("/v1/auth/2fa/setup").json()["secret"]
    found.values["totp secret"] = secret
    totp = pyotp.TOTP(secret)
    enabled = client.post("/v1/auth/2fa/enable", {"code": totp.now()}, format="json")
    recovery = enabled.json()["recoveryCodes"]
    found.values |= {f"recovery code {i}": code for i, code in enumerate(recovery)}
    login = APIClient(REMOTE_ADDR="198.51.100.79")
    wrong = f"{(int(totp.now()) + 1) % 1_000_000:06d}"
    found.values["wrong totp code"] = wrong
    for code in (wrong, recovery[0]):
        step = login.post(
            "/v1/auth/login", {"email": owner.email, "password": PASSWORD}, format="json"
        )
        token = step.json()["mfaToken"]
        found.values[f"mfa token {code}"] = token
        login.post("/v1/auth/login/2fa", {"mfaToken": token, "code": code}, format="json")
    found.password(PASSWORD)

    leaks = {
        f"{record.name}: {record.getMessage()[:120]}": secrets_in
        for record in every_log_record.values()
        for secrets_in in [sorted({s for text in _texts_of(record) for s in found.found_in(text)})]
        if secrets_in
    }
    assert leaks == {}
    names = {record.name for record in every_log_record.values()}
    assert {"sigsentry.webhooks", "sigsentry.access"} <= names  # the lines were written
