"""Fuzzing every `/v1` endpoint: only SPEC §3 answers (or 2xx), never a 500.

Hypothesis varies the method, the `Authorization`, `X-Project-Id` and `Origin`
headers, the path parameters (real ids of the caller's and another tenant's
objects, random UUIDs, junk) and the body (any JSON, raw bytes, other media
types). Endpoints are enumerated from the URLconf, so new ones are fuzzed
without editing this file. Oversized bodies and headers are checked in-process
and through gunicorn.
"""

from __future__ import annotations

import http.client
import json
import socket
import string
import time
import uuid
from urllib.parse import quote, urlsplit

import pytest
from django.conf import settings as django_settings
from django.test import override_settings
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from apps.accounts import services as account_services
from apps.analyses.models import Analysis
from apps.apikeys.keyformat import KeyKind, generate
from apps.projects.models import Channel, LogSource
from tests.factories import PASSWORD, make_key
from tests.reliability.endpoints import PARAM, api_endpoints, param_values
from tests.reliability.helpers import bearer, call

#: SPEC §3: every error code and its status.
SPEC_ERRORS = {
    "AUTHENTICATION_REQUIRED": 401,
    "AUTHORIZATION_MALFORMED": 401,
    "KEY_INVALID": 401,
    "KEY_REVOKED": 401,
    "KEY_EXPIRED": 401,
    "KEY_FORMAT_DEPRECATED": 401,
    "TOKEN_INVALID": 401,
    "TOKEN_EXPIRED": 401,
    "PROJECT_ID_REQUIRED": 400,
    "PROJECT_ID_INVALID": 400,
    "PROJECT_MISMATCH": 403,
    "PROJECT_NOT_FOUND": 404,
    "PERMISSION_DENIED": 403,
    "KEY_MANAGEMENT_FORBIDDEN": 403,
    "PERMISSIONS_LOCKED": 400,
    "VALIDATION_ERROR": 400,
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "ORIGIN_NOT_ALLOWED": 403,
    "LAST_OWNER": 409,
    "INVALID_CREDENTIALS": 401,
    "SIGNATURE_INVALID": 401,
    "RATE_LIMITED": 429,
    "SERVICE_UNAVAILABLE": 503,
}
ENDPOINTS = api_endpoints()
NO_THROTTLING = override_settings(
    THROTTLE_RATES={scope: (1_000_000, 60) for scope in django_settings.THROTTLE_RATES}
)
FUZZ_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)

_header_text = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"),
    max_size=120,
)
_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=15), children, max_size=5)
    ),
    max_leaves=15,
)
_field_names = st.sampled_from(
    [
        "email",
        "password",
        "organizationName",
        "refresh",
        "name",
        "permissions",
        "expiresAt",
        "allowedOrigins",
        "graceSeconds",
        "keys",
        "role",
        "title",
        "input",
        "question",
        "rating",
        "comment",
        "kind",
        "settings",
        "target",
    ]
)
#: Values that pass some validation, so that fuzzing reaches past the first check.
_PLAUSIBLE = {
    "email": ["new@example.com", "not-an-email", "a" * 64 + "@" + "b" * 63 + ".example.com" * 16],
    "password": ["correct-horse-battery-staple", "short"],
    "organizationName": ["Acme", "", "nul\x00byte"],
    "name": ["ci", "x" * 101, "", "nul\x00byte"],
    "permissions": [["analysis:read"], ["analysis:create", "analysis:read"], [], ["nope"]],
    "expiresAt": [
        "2099-01-01T00:00:00Z",
        "2000-01-01T00:00:00Z",
        "2099-01-01T00:00:00",
        "9999-12-31T23:59:59-14:00",
    ],
    "allowedOrigins": [["https://app.test"], ["http://insecure.test"], []],
    "graceSeconds": [0, 60, 604801, -1, True],
    "role": ["owner", "admin", "member", "viewer", "king"],
    "title": ["Checkout errors"],
    "input": ["ERROR 500 /checkout"],
    "question": ["Why?"],
    "rating": ["up", "down", "sideways"],
    "comment": ["thanks", "nul\x00byte"],
    "kind": ["http", "syslog", "s3", "otlp", "email", "slack", "webhook", "fax"],
    "settings": [{}, {"url": "https://logs.test"}, []],
    "target": ["ops@example.com", "https://hooks.slack.com/services/x", "http://127.0.0.1/"],
}
_plausible_objects = st.fixed_dictionaries(
    {},
    optional={
        name: st.one_of(st.sampled_from(values), _json_values)
        for name, values in _PLAUSIBLE.items()
    },
)
_bodies = st.one_of(
    _plausible_objects,
    st.dictionaries(_field_names, _json_values, max_size=6),
    _json_values,
    st.just(None),
)


@pytest.fixture
def world(db, project, other_project, owner, member, outsider):
    """The caller's credentials and ids of real objects, plus an outsider's."""
    _secret, secret_key = make_key(KeyKind.SECRET, project=project)
    _sdk, sdk_key = make_key(KeyKind.PUBLIC, project=project, allowed_origins=["https://app.test"])
    _org, org_key = make_key(KeyKind.ORGANIZATION, organization=project.organization)
    revoked, revoked_key = make_key(KeyKind.SECRET, project=project)
    revoked.revoked_at = revoked.created_at
    revoked.save(update_fields=["revoked_at"])
    pair = account_services.start_session(owner)
    analysis = Analysis.objects.create(
        project=project, title="t", input="i", created_by_type="user", created_by_label="x"
    )
    log_source = LogSource.objects.create(project=project, name="web", kind="http")
    channel = Channel.objects.create(
        project=project, name="ops", kind="email", target="ops@example.com"
    )
    outsider_project = outsider.memberships.first().organization.projects.first()
    ids = {
        "organization": str(project.organization_id),
        "project": str(project.id),
        "user": str(member.id),
        "analysis": str(analysis.id),
        "log_source": str(log_source.id),
        "channel": str(channel.id),
    }
    credentials = {
        "secret": secret_key,
        "sdk": sdk_key,
        "org": org_key,
        "revoked": revoked_key,
        "access": pair.access,
        "refresh": pair.refresh,
    }

    def ids_for(route: str) -> dict[str, str]:
        """The right key for the collection the route names."""
        if "/sdk-keys" in route:
            return ids | {"key": str(_sdk.id)}
        if route.startswith("/v1/organizations/"):
            return ids | {"key": str(_org.id)}
        return ids | {"key": str(_secret.id)}

    return {
        "ids": ids,
        "ids_for": ids_for,
        "other_ids": {"project": str(other_project.id), "outsider": str(outsider_project.id)},
        "credentials": credentials,
    }


@st.composite
def authorizations(draw, credentials: dict[str, str]):
    """Half the time a real credential (the owner's JWT most often), else a broken one."""
    token = credentials[draw(st.sampled_from(["access", "access", *sorted(credentials)]))]
    choice = draw(st.integers(0, 11))
    if choice == 0:
        return None
    if choice <= 6:
        return f"Bearer {token}"
    if choice == 7:  # a real credential, mangled
        cut = draw(st.integers(0, len(token)))
        return f"Bearer {token[:cut]}{draw(_header_text)}"
    if choice == 8:
        return f"{draw(st.sampled_from(['bearer', 'BEARER', 'Token', 'Basic', '']))} {token}"
    if choice == 9:
        prefix = draw(st.sampled_from(["ss_pub_", "ss_secret_", "ss_org_", "tb_", "ss_live_"]))
        return f"Bearer {prefix}{draw(_header_text)}"
    if choice == 10:
        return f"Bearer {generate(draw(st.sampled_from(list(KeyKind))))}"
    return draw(_header_text)


def _path_value(draw, real: str | None) -> str:
    choice = draw(st.integers(0, 9))
    if real is not None and choice <= 6:
        return real
    if choice <= 8:
        return str(uuid.uuid4())
    junk = draw(st.text(alphabet=string.ascii_letters + string.digits + "-_.~%", min_size=1))
    return quote(junk, safe="")


def _body_bytes(draw) -> tuple[bytes | None, str]:
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return draw(st.binary(max_size=200)), "application/json"
    if choice == 1:
        return b"a=1&b=2", draw(
            st.sampled_from(["application/x-www-form-urlencoded", "text/plain", "multipart/x"])
        )
    body = draw(_bodies)
    return (None if body is None else json.dumps(body).encode()), "application/json"


def assert_spec_answer(response, credential: str | None, method: str = "get") -> None:
    status = response.status_code
    assert status < 500, response.content[:500]  # the database is up: not even a 503
    if status < 300 or method == "head":  # a HEAD answer has no body to check
        return
    body = json.loads(response.content)
    code = body["error"]["code"]
    assert SPEC_ERRORS.get(code) == status, (status, body)
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if status == 401:
        assert response["WWW-Authenticate"].startswith('Bearer realm="sigsentry"')
    if status == 429:
        assert int(response["Retry-After"]) > 0
    secret = (credential or "").partition(" ")[2]
    if len(secret) >= 16:
        assert secret not in response.content.decode(errors="replace")


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_fuzzed_requests_get_only_spec_answers(endpoint, world, api_client):
    @FUZZ_SETTINGS
    @given(data=st.data())
    def fuzz(data):
        draw = data.draw
        others = ["get", "post", "put", "patch", "delete", "options", "head"]
        method = draw(st.sampled_from(endpoint.methods) | st.sampled_from(others))
        values = param_values(endpoint.route, world["ids_for"](endpoint.route))
        path = PARAM.sub(lambda m: _path_value(draw, values.get(m.group("name"))), endpoint.route)
        extra = {}
        authorization = draw(authorizations(world["credentials"]))
        if authorization is not None:
            extra["HTTP_AUTHORIZATION"] = authorization
        project_id = draw(
            st.one_of(
                st.just(world["ids"]["project"]),
                st.none(),
                st.sampled_from(list(world["other_ids"].values())),
                st.uuids().map(str),
                _header_text,
            )
        )
        if project_id is not None:
            extra["HTTP_X_PROJECT_ID"] = project_id
        origin = draw(st.one_of(st.none(), st.just("https://app.test"), _header_text))
        if origin is not None:
            extra["HTTP_ORIGIN"] = origin
        body, content_type = _body_bytes(draw)
        if draw(st.booleans()):
            path += "?" + draw(
                st.sampled_from(
                    [
                        "limit=0",
                        "limit=abc",
                        "limit=%C2%B2",
                        "cursor=zz",
                        "cursor=cD1nYXJiYWdl",  # decodes to "p=garbage"
                        "action=x",
                        "action=%00",
                        "limit=%00",
                    ]
                )
            )
        handler = getattr(api_client, method)
        if method in ("post", "put", "patch", "delete") and body is not None:
            response = handler(path, data=body, content_type=content_type, **extra)
        else:
            response = handler(path, **extra)
        assert_spec_answer(response, authorization, method)
        event(f"{method} {response.status_code}")

    with NO_THROTTLING:
        fuzz()


def test_every_api_endpoint_is_fuzzed():
    assert len(ENDPOINTS) >= 25, [str(e) for e in ENDPOINTS]


# Values the database cannot store -------------------------------------------------------


def _unstorable_cases(world, bad: str) -> list[tuple[str, dict]]:
    org, project = world["ids"]["organization"], world["ids"]["project"]
    return [
        (
            "/v1/auth/signup",
            {"email": "n@example.com", "password": "a-long-pw-123", "organizationName": f"a{bad}b"},
        ),
        ("/v1/auth/login", {"email": f"a{bad}@example.com", "password": "a-long-pw-123"}),
        (f"/v1/projects/{project}/api-keys", {"name": f"a{bad}", "permissions": ["analysis:read"]}),
        ("/v1/organizations", {"name": f"a{bad}"}),
        (f"/v1/organizations/{org}/projects", {"name": f"a{bad}"}),
        (f"/v1/organizations/{org}/members", {"email": f"a{bad}@example.com", "role": "member"}),
        ("/v1/analyses", {"title": "t", "input": "i", f"extra{bad}": 1}),
    ]


@pytest.mark.parametrize("bad", ["\x00", "\ud800", "\udfff"], ids=["nul", "surrogate", "low"])
def test_unstorable_characters_in_json_are_a_validation_error_not_an_outage(world, api_client, bad):
    """NUL, or a lone surrogate (`"\\ud800"` is valid JSON; UTF-8 cannot encode it)."""
    auth = {
        "HTTP_AUTHORIZATION": f"Bearer {world['credentials']['access']}",
        "HTTP_X_PROJECT_ID": world["ids"]["project"],
    }
    for path, body in _unstorable_cases(world, bad):
        raw = json.dumps(body)  # ASCII: the character travels as its JSON escape
        response = api_client.post(path, raw, content_type="application/json", **auth)
        assert response.status_code == 400, (path, response.content[:200])
        assert response.json()["error"]["code"] == "VALIDATION_ERROR"


def test_an_email_longer_than_the_column_is_a_validation_error(db, api_client):
    email = "a" * 64 + "@" + ".".join(["b" * 60] * 4) + ".com"
    body = {"email": email, "password": "a-long-pw-123", "organizationName": "x"}
    response = api_client.post("/v1/auth/signup", body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["details"]["fields"]["email"]


def test_an_expiry_past_the_last_representable_time_is_a_validation_error(world, api_client):
    body = {
        "name": "far",
        "permissions": ["analysis:read"],
        "expiresAt": "9999-12-31T23:59:59-14:00",
    }
    response = api_client.post(
        f"/v1/projects/{world['ids']['project']}/api-keys",
        body,
        format="json",
        HTTP_AUTHORIZATION=f"Bearer {world['credentials']['access']}",
    )
    assert response.status_code == 400
    assert response.json()["error"]["details"]["fields"]["expiresAt"]


# Oversized input --------------------------------------------------------------------------


def _big_json(limit: int | None = None) -> bytes:
    """A JSON object just over `limit` (DATA_UPLOAD_MAX_MEMORY_SIZE by default)."""
    big = "x" * ((limit or django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE) + 1)
    return json.dumps({"email": "a@example.com", "password": "p", "title": big}).encode()


@pytest.mark.parametrize("endpoint", [e for e in ENDPOINTS if "post" in e.methods], ids=str)
def test_oversized_bodies_are_a_validation_error(endpoint, world, api_client):
    path = endpoint.path(param_values(endpoint.route, world["ids_for"](endpoint.route)))
    # An endpoint whose valid bodies are larger declares its own limit (secret scanning).
    limit = getattr(endpoint.view_class, "max_body_size", None)
    response = api_client.post(
        path,
        data=_big_json(limit),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {world['credentials']['access']}",
        HTTP_X_PROJECT_ID=world["ids"]["project"],
    )
    assert response.status_code == 400, (path, response.content[:300])
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"


def test_a_10kb_authorization_header_is_malformed(db, api_client):
    response = api_client.get("/v1/me", HTTP_AUTHORIZATION="Bearer " + "a" * 10 * 1024)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "AUTHORIZATION_MALFORMED"


@pytest.mark.slow
def test_oversized_input_through_gunicorn_is_rejected_cleanly(live_url, project, owner):
    _key, plaintext = make_key(KeyKind.SECRET, project=project)

    reply = call(live_url, "GET", "/v1/me", headers={"Authorization": "Bearer " + "a" * 10240})
    assert (reply.status, reply.code) == (401, "AUTHORIZATION_MALFORMED")
    reply = call(live_url, "POST", "/v1/auth/login", body=_big_json())
    assert (reply.status, reply.code) == (400, "VALIDATION_ERROR")
    reply = call(live_url, "POST", "/v1/analyses", headers=bearer(plaintext), body=_big_json())
    assert (reply.status, reply.code) == (400, "VALIDATION_ERROR")
    reply = call(live_url, "POST", "/v1/leaked-keys", body=b"[" * 100_000 + b"]" * 100_000)
    assert (reply.status, reply.code) == (400, "VALIDATION_ERROR")
    # Beyond what even the server accepts: refused before the application, still a 4xx.
    reply = call(live_url, "GET", "/v1/me", headers={"Authorization": "Bearer " + "a" * 40_000})
    assert 400 <= reply.status < 500


@pytest.mark.slow
def test_a_body_sent_chunked_is_read_and_one_too_large_refused(live_url, owner):
    """Without a Content-Length (a Go or Node client streaming its JSON) Django read the
    body as empty: "an email address is required" for a body that held one."""
    login = json.dumps({"email": owner.email, "password": PASSWORD}).encode()
    reply = call(live_url, "POST", "/v1/auth/login", body=iter([login[:9], login[9:]]))
    assert reply.status == 200, reply.body
    assert set(reply.json) >= {"access", "refresh"}

    big = _big_json()
    reply = call(live_url, "POST", "/v1/auth/login", body=iter([big[:400_000], big[400_000:]]))
    assert (reply.status, reply.code) == (400, "VALIDATION_ERROR")
    assert reply.json["error"]["details"]["fields"] == {
        "body": [f"At most {django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes."]
    }


@pytest.mark.slow
def test_a_client_still_sending_an_oversized_body_gets_the_400_not_a_reset(live_url):
    """The server answers an oversized body without parsing it, but reads a body a little
    over the limit to its end first: closing a socket with unread data sends a reset, and
    a client still sending (here: the second half, sent after a pause) would see that
    instead of the answer (a flaky BrokenPipeError in CI before)."""
    body = _big_json()
    head = (
        f"POST /v1/auth/login HTTP/1.1\r\nHost: {urlsplit(live_url).netloc}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    half = len(body) // 2
    parts = urlsplit(live_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=15) as sock:
        sock.sendall(head + body[:half])
        time.sleep(0.5)  # without the lingering read, the server has answered and closed
        sock.sendall(body[half:])
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        data = answer.read()

    assert answer.status == 400
    assert json.loads(data)["error"]["code"] == "VALIDATION_ERROR"
