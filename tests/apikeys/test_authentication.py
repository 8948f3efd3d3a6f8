"""The /v1 key path end to end (SPEC §2.1, §2.2, §3) on the project-scoped endpoints.

* who reaches what: every credential kind and role, and keys minted with one
  permission, against every analyses and configuration endpoint;
* every SPEC §3 code these endpoints can answer, in SPEC §3's order of checks;
* secrecy: a credential is never echoed, logged or stored;
* tenant isolation, `lastUsedAt` tracking and the query budget per request.
"""

from __future__ import annotations

import itertools
import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import timedelta

import jwt
import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from apps.accounts import services as account_services
from apps.accounts.models import AuthSession
from apps.analyses.models import Analysis, Feedback, FollowUp
from apps.apikeys import keyformat
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from apps.apikeys.services import report_leaked_keys, revoke_key, roll_key
from apps.projects import services as config_services
from apps.projects.models import Channel, LogSource
from core.permissions import ALL_PERMISSIONS
from tests.analyses.helpers import error_code, send
from tests.factories import OrganizationFactory, ProjectFactory, make_key

pytestmark = pytest.mark.django_db

READ, CREATE = "analysis:read", "analysis:create"
CONFIG_READ, CONFIG_WRITE = "config:read", "config:write"

#: Every code of SPEC §3.
SPEC_CODES = frozenset(
    {
        "AUTHENTICATION_REQUIRED",
        "AUTHORIZATION_MALFORMED",
        "KEY_INVALID",
        "KEY_REVOKED",
        "KEY_EXPIRED",
        "KEY_FORMAT_DEPRECATED",
        "TOKEN_INVALID",
        "TOKEN_EXPIRED",
        "PROJECT_ID_REQUIRED",
        "PROJECT_ID_INVALID",
        "PROJECT_MISMATCH",
        "PROJECT_NOT_FOUND",
        "PERMISSION_DENIED",
        "KEY_MANAGEMENT_FORBIDDEN",
        "PERMISSIONS_LOCKED",
        "VALIDATION_ERROR",
        "NOT_FOUND",
        "METHOD_NOT_ALLOWED",
        "ORIGIN_NOT_ALLOWED",
        "LAST_OWNER",
        "INVALID_CREDENTIALS",
        "RATE_LIMITED",
        "SERVICE_UNAVAILABLE",
    }
)
WWW_AUTHENTICATE = 'Bearer realm="sigsentry"'
WWW_AUTHENTICATE_INVALID = 'Bearer realm="sigsentry", error="invalid_token"'

#: SPEC §2.1 and §2.2, written out rather than computed from the code under test.
PERMISSIONS_OF = {
    "pub": {READ, CREATE},
    "secret": {READ, CREATE, CONFIG_READ, CONFIG_WRITE},
    "org": {READ, CREATE, CONFIG_READ, CONFIG_WRITE},
    "owner": {READ, CREATE, CONFIG_READ, CONFIG_WRITE},
    "admin": {READ, CREATE, CONFIG_READ, CONFIG_WRITE},
    "member": {READ, CREATE, CONFIG_READ},
    "viewer": {READ, CONFIG_READ},
}
ROLES = ("owner", "admin", "member", "viewer")


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: str  # may name {analysis}, {log_source} or {channel} of the `world` fixture
    permission: str
    body: dict | None
    success: int


ENDPOINTS = [
    Endpoint("analyses-list", "GET", "/v1/analyses", READ, None, 200),
    Endpoint("analyses-create", "POST", "/v1/analyses", CREATE, {"title": "t", "input": "i"}, 201),
    Endpoint("analysis-detail", "GET", "/v1/analyses/{analysis}", READ, None, 200),
    Endpoint(
        "follow-up", "POST", "/v1/analyses/{analysis}/follow-ups", CREATE, {"question": "q"}, 201
    ),
    Endpoint("feedback", "POST", "/v1/analyses/{analysis}/feedback", CREATE, {"rating": "up"}, 201),
    Endpoint("config-read", "GET", "/v1/config", CONFIG_READ, None, 200),
    Endpoint(
        "log-source-create",
        "POST",
        "/v1/config/log-sources",
        CONFIG_WRITE,
        {"name": "n", "kind": "http"},
        201,
    ),
    Endpoint(
        "log-source-update",
        "PATCH",
        "/v1/config/log-sources/{log_source}",
        CONFIG_WRITE,
        {"name": "renamed"},
        200,
    ),
    Endpoint(
        "channel-create",
        "POST",
        "/v1/config/channels",
        CONFIG_WRITE,
        {"name": "n", "kind": "slack", "target": "#n"},
        201,
    ),
    Endpoint("channel-delete", "DELETE", "/v1/config/channels/{channel}", CONFIG_WRITE, None, 204),
]
READ_ENDPOINTS = [e for e in ENDPOINTS if e.method == "GET"]
ENDPOINT = {e.name: e for e in ENDPOINTS}
_ips = (f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}" for n in itertools.count(1))


def fresh_ip() -> dict[str, str]:
    """A new client address, so many deliberate failures in one test stay under the
    failed-authentication throttle (which is per client IP)."""
    return {"REMOTE_ADDR": next(_ips)}


@dataclass(frozen=True)
class Credential:
    token: str
    project_header: str | None


@pytest.fixture
def foreign_project(db):
    """A project of an organization nobody in `organization` belongs to."""
    return ProjectFactory(organization=OrganizationFactory(name="Rival"), name="Rival app")


@pytest.fixture
def world(project):
    """One analysis, log source and channel in `project`: the ids the paths name."""
    analysis = Analysis.objects.create(
        project=project,
        title="our incident",
        input="our private logs",
        created_by_type="user",
        created_by_label="someone@example.com",
    )
    log_source = config_services.create_log_source(project=project, name="our-source", kind="http")
    channel = config_services.create_channel(
        project=project, name="our-channel", kind="slack", target="#ours"
    )
    return {"analysis": analysis.id, "log_source": log_source.id, "channel": channel.id}


@pytest.fixture
def credential(request, project, organization, user_token):
    """`credential(who, permissions=None)`: a credential for `project`.

    `who` is pub, secret, org (keys; org keys name the project in X-Project-Id)
    or a role (a JWT of a user with that role, X-Project-Id set).
    """

    def make(who: str, permissions=None) -> Credential:
        if who == "pub":
            return Credential(make_key(KeyKind.PUBLIC, project=project)[1], None)
        if who == "secret":
            key = make_key(KeyKind.SECRET, project=project, permissions=permissions)[1]
            return Credential(key, None)
        if who == "org":
            key = make_key(KeyKind.ORGANIZATION, organization=organization, permissions=permissions)
            return Credential(key[1], str(project.id))
        return Credential(user_token(request.getfixturevalue(who)), str(project.id))

    return make


def call(client, endpoint: Endpoint, cred: Credential | None, world, **extra):
    return send(
        client,
        endpoint.method,
        endpoint.path.format(**world),
        credential=cred.token if cred else None,
        project_id=cred.project_header if cred else None,
        body=endpoint.body,
        **extra,
    )


def snapshot() -> tuple:
    """Everything the endpoints could write, to prove a refused request wrote nothing."""
    return (
        Analysis.objects.count(),
        FollowUp.objects.count(),
        Feedback.objects.count(),
        sorted(LogSource.objects.values_list("name", flat=True)),
        sorted(Channel.objects.values_list("name", flat=True)),
    )


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if status == 401:
        assert response["WWW-Authenticate"] in (WWW_AUTHENTICATE, WWW_AUTHENTICATE_INVALID)
    else:
        assert "WWW-Authenticate" not in response
    return body["error"]


def mutate(text: str, position: int) -> str:
    """`text` with the character at `position` replaced by another one."""
    alphabet = keyformat.BASE62_ALPHABET
    old = text[position]
    new = alphabet[(alphabet.index(old) + 1) % len(alphabet)] if old in alphabet else "x"
    return text[:position] + new + text[position + 1 :]


# --- Who reaches what -------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
@pytest.mark.parametrize("who", list(PERMISSIONS_OF))
def test_each_credential_reaches_exactly_what_its_permissions_allow(
    api_client, credential, world, who, endpoint
):
    cred = credential(who)
    before = snapshot()
    response = call(api_client, endpoint, cred, world)
    if endpoint.permission in PERMISSIONS_OF[who]:
        assert response.status_code == endpoint.success, response.content
    else:
        error = assert_error(response, 403, "PERMISSION_DENIED")
        assert error["details"] == {"required": endpoint.permission}
        assert snapshot() == before


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
@pytest.mark.parametrize("permission", ALL_PERMISSIONS)
@pytest.mark.parametrize("kind", ["secret", "org"])
def test_key_with_one_permission_reaches_only_the_endpoints_of_that_permission(
    api_client, credential, world, kind, permission, endpoint
):
    cred = credential(kind, permissions=[permission])
    before = snapshot()
    response = call(api_client, endpoint, cred, world)
    if endpoint.permission == permission:
        assert response.status_code == endpoint.success, response.content
    else:
        error = assert_error(response, 403, "PERMISSION_DENIED")
        assert error["details"] == {"required": endpoint.permission}
        assert snapshot() == before


def test_role_change_applies_to_the_next_request(api_client, project, member, user_token):
    token = user_token(member)
    endpoint = ENDPOINT["log-source-create"]  # config:write
    denied = call(api_client, endpoint, Credential(token, str(project.id)), {})
    assert_error(denied, 403, "PERMISSION_DENIED")
    member.memberships.update(role="admin")
    allowed = call(api_client, endpoint, Credential(token, str(project.id)), {})
    assert allowed.status_code == 201


@pytest.mark.parametrize("who", ["pub", "secret"])
def test_project_key_may_name_its_own_project(api_client, credential, project, who):
    cred = credential(who)
    response = send(
        api_client, "GET", "/v1/analyses", credential=cred.token, project_id=str(project.id).upper()
    )
    assert response.status_code == 200


def test_bearer_scheme_is_case_insensitive_and_spaces_are_tolerated(api_client, credential):
    key = credential("secret").token
    for header in (f"bearer {key}", f"BEARER {key}", f"Bearer   {key}", f" Bearer {key} "):
        response = api_client.get("/v1/analyses", HTTP_AUTHORIZATION=header)
        assert response.status_code == 200, header


# --- Every SPEC §3 code these endpoints can answer ---------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_no_credential_is_authentication_required(api_client, world, endpoint):
    response = call(api_client, endpoint, None, world)
    assert_error(response, 401, "AUTHENTICATION_REQUIRED")
    assert response["WWW-Authenticate"] == WWW_AUTHENTICATE


@pytest.mark.parametrize(
    "header",
    [
        "Basic dXNlcjpwYXNzd29yZA==",
        "Bearer",
        "Bearer ",
        "Bearer a b",
        "Bearer ss_secret_one ss_secret_two",
        "Bearer ss_secret_one, Bearer ss_secret_two",
        "Token abc",
        "Bearerabc",
        "Bearer\tabc",
        "Bearer abc\u00e9",
        "Bearer <script>",
        "",
        "Bearer " + "a" * 5000,
    ],
)
def test_malformed_authorization_is_refused_without_a_query(api_client, world, header):
    with CaptureQueriesContext(connection) as ctx:
        response = api_client.get("/v1/analyses", HTTP_AUTHORIZATION=header)
    assert_error(response, 401, "AUTHORIZATION_MALFORMED")
    assert response["WWW-Authenticate"] == WWW_AUTHENTICATE_INVALID
    assert ctx.captured_queries == []


def _unknown_key(kind: KeyKind) -> str:
    return keyformat.generate(kind)


def _bad_checksum(kind: KeyKind) -> str:
    return mutate(keyformat.generate(kind), -1)


@pytest.mark.parametrize(
    ("make_candidate", "queries"),
    [
        (lambda: _unknown_key(KeyKind.PUBLIC), 1),
        (lambda: _unknown_key(KeyKind.SECRET), 1),
        (lambda: _unknown_key(KeyKind.ORGANIZATION), 1),
        (lambda: _bad_checksum(KeyKind.SECRET), 0),
        (lambda: "ss_foo_" + keyformat.generate(KeyKind.SECRET)[10:], 0),
        (lambda: "ss_SECRET_" + keyformat.generate(KeyKind.SECRET)[10:], 0),
        (lambda: keyformat.generate(KeyKind.SECRET)[:-1], 0),
        (lambda: keyformat.generate(KeyKind.SECRET) + "0", 0),
        (lambda: "ss_secret_", 0),
        (lambda: "hello", 0),
        (lambda: "0123456789", 0),
        (lambda: "sk_live_51H8fake", 0),
    ],
    ids=[
        "unknown-pub",
        "unknown-secret",
        "unknown-org",
        "bad-checksum",
        "unknown-prefix",
        "prefix-case",
        "truncated",
        "too-long",
        "prefix-only",
        "garbage",
        "digits",
        "other-vendor",
    ],
)
def test_invalid_keys_are_key_invalid(api_client, world, make_candidate, queries):
    with CaptureQueriesContext(connection) as ctx:
        response = send(api_client, "GET", "/v1/analyses", credential=make_candidate())
    assert_error(response, 401, "KEY_INVALID")
    assert response["WWW-Authenticate"] == WWW_AUTHENTICATE_INVALID
    assert len(ctx.captured_queries) == queries


@pytest.mark.parametrize("kind", list(KeyKind), ids=lambda k: k.name.lower())
def test_any_one_character_change_to_a_valid_key_is_refused_without_a_query(
    api_client, project, kind
):
    _, key = make_key(kind, project=project)
    positions = range(len(key))
    for position in positions:
        candidate = mutate(key, position)
        with CaptureQueriesContext(connection) as ctx:
            response = send(api_client, "GET", "/v1/me", credential=candidate, **fresh_ip())
        assert error_code(response) == "KEY_INVALID", position
        assert ctx.captured_queries == [], position
    assert send(api_client, "GET", "/v1/me", credential=key).status_code == 200


@pytest.mark.parametrize("who", ["pub", "secret", "org"])
def test_revoked_key_is_refused_from_the_next_request_on(api_client, credential, owner, who):
    cred = credential(who)
    endpoint = READ_ENDPOINTS[0]
    assert call(api_client, endpoint, cred, {}).status_code == 200
    revoke_key(actor=owner, api_key=ApiKey.objects.get())
    response = call(api_client, endpoint, cred, {})
    assert_error(response, 401, "KEY_REVOKED")
    assert response["WWW-Authenticate"] == WWW_AUTHENTICATE_INVALID


@pytest.mark.parametrize("who", ["pub", "secret", "org"])
def test_expired_key_is_refused(api_client, credential, who):
    cred = credential(who)
    endpoint = READ_ENDPOINTS[0]
    ApiKey.objects.update(expires_at=timezone.now() + timedelta(minutes=5))
    assert call(api_client, endpoint, cred, {}).status_code == 200
    ApiKey.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = call(api_client, endpoint, cred, {})
    assert_error(response, 401, "KEY_EXPIRED")
    assert response["WWW-Authenticate"] == WWW_AUTHENTICATE_INVALID


def test_rolled_key_works_until_its_grace_ends(api_client, owner, credential):
    old = credential("secret")
    minted = roll_key(actor=owner, api_key=ApiKey.objects.get(), grace_seconds=300)
    assert send(api_client, "GET", "/v1/analyses", credential=old.token).status_code == 200
    assert send(api_client, "GET", "/v1/analyses", credential=minted.key).status_code == 200
    ApiKey.objects.filter(pk=minted.api_key.replaces_id).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert_error(send(api_client, "GET", "/v1/analyses", credential=old.token), 401, "KEY_EXPIRED")
    assert send(api_client, "GET", "/v1/analyses", credential=minted.key).status_code == 200


def test_revoked_and_expired_key_is_reported_revoked(api_client, credential, owner):
    cred = credential("secret")
    ApiKey.objects.update(expires_at=timezone.now() - timedelta(days=1))
    revoke_key(actor=owner, api_key=ApiKey.objects.get())
    assert_error(send(api_client, "GET", "/v1/analyses", credential=cred.token), 401, "KEY_REVOKED")


def _token_signed_with(secret: str, **claims) -> str:
    now = timezone.now()
    payload = {
        "iss": "sigsentry",
        "aud": "sigsentry-api",
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(hours=1)).timestamp()),
        "jti": "x" * 32,
        "typ": "access",
        "sub": "00000000-0000-0000-0000-000000000000",
        "sid": "00000000-0000-0000-0000-000000000000",
    } | claims
    return jwt.encode(payload, secret, algorithm="HS256")


@pytest.mark.parametrize(
    "make_token",
    [
        lambda user: _token_signed_with(
            "not-the-signing-key-but-just-as-long-0123456789", sub=str(user.id)
        ),
        lambda user: account_services.start_session(user).refresh,
        lambda user: "a.b.c",
        lambda user: "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
        lambda user: _token_signed_with(settings.JWT_SIGNING_KEY, sub=str(user.id)),
        lambda user: _token_signed_with(settings.JWT_SIGNING_KEY, aud="someone-else"),
    ],
    ids=["forged", "refresh-as-access", "garbage", "alg-none", "unknown-session", "audience"],
)
def test_invalid_session_tokens_are_token_invalid(api_client, project, member, make_token):
    response = send(
        api_client, "GET", "/v1/analyses", credential=make_token(member), project_id=project.id
    )
    assert_error(response, 401, "TOKEN_INVALID")
    assert response["WWW-Authenticate"] == WWW_AUTHENTICATE_INVALID


def test_token_of_an_ended_session_is_token_invalid(api_client, project, member, user_token):
    token = user_token(member)
    first = send(api_client, "GET", "/v1/config", credential=token, project_id=project.id)
    assert first.status_code == 200
    account_services.logout(session=AuthSession.objects.get(user=member))
    response = send(api_client, "GET", "/v1/config", credential=token, project_id=project.id)
    assert_error(response, 401, "TOKEN_INVALID")


def test_expired_session_token_is_token_expired(api_client, project):
    past = timezone.now() - timedelta(hours=2)
    token = _token_signed_with(
        settings.JWT_SIGNING_KEY, iat=int(past.timestamp()), exp=int(past.timestamp()) + 60
    )
    response = send(api_client, "GET", "/v1/analyses", credential=token, project_id=project.id)
    assert_error(response, 401, "TOKEN_EXPIRED")


@pytest.mark.parametrize("header", [None, "", "   "])
@pytest.mark.parametrize("who", ["org", "member"])
def test_org_key_or_user_without_project_id_is_project_id_required(
    api_client, credential, world, who, header
):
    cred = credential(who)
    for endpoint in ENDPOINTS:
        response = call(api_client, endpoint, Credential(cred.token, header), world)
        assert_error(response, 400, "PROJECT_ID_REQUIRED")


@pytest.mark.parametrize("header", ["not-a-uuid", "123", "' OR 1=1 --", "0" * 33])
@pytest.mark.parametrize("who", ["pub", "secret", "org", "member"])
def test_project_id_that_is_not_a_uuid_is_project_id_invalid(api_client, credential, who, header):
    cred = credential(who)
    response = send(api_client, "GET", "/v1/analyses", credential=cred.token, project_id=header)
    assert_error(response, 400, "PROJECT_ID_INVALID")


@pytest.mark.parametrize("target", ["sibling", "foreign", "nonexistent"])
@pytest.mark.parametrize("who", ["pub", "secret"])
def test_project_key_naming_any_other_project_is_project_mismatch(
    api_client, credential, world, other_project, foreign_project, who, target
):
    cred = credential(who)
    project_id = {
        "sibling": other_project.id,
        "foreign": foreign_project.id,
        "nonexistent": "7d2c3a2e-0000-4000-8000-000000000000",
    }[target]
    for endpoint in ENDPOINTS:
        response = call(api_client, endpoint, Credential(cred.token, str(project_id)), world)
        assert_error(response, 403, "PROJECT_MISMATCH")


@pytest.mark.parametrize("target", ["foreign", "nonexistent"])
def test_org_key_naming_a_project_outside_its_organization_is_project_not_found(
    api_client, credential, world, foreign_project, target
):
    cred = credential("org")
    project_id = (
        foreign_project.id if target == "foreign" else "7d2c3a2e-0000-4000-8000-0000000000aa"
    )
    for endpoint in ENDPOINTS:
        response = call(api_client, endpoint, Credential(cred.token, str(project_id)), world)
        assert_error(response, 404, "PROJECT_NOT_FOUND")


def test_org_key_reaches_every_project_of_its_organization(
    api_client, credential, project, other_project
):
    cred = credential("org")
    for project_id in (str(project.id), f"  {str(other_project.id).upper()} "):
        response = send(
            api_client, "GET", "/v1/config", credential=cred.token, project_id=project_id
        )
        assert response.status_code == 200


@pytest.mark.parametrize("target", ["foreign", "nonexistent"])
def test_user_naming_a_project_of_another_organization_is_project_not_found(
    api_client, user_token, member, world, foreign_project, target
):
    project_id = (
        foreign_project.id if target == "foreign" else "7d2c3a2e-0000-4000-8000-0000000000bb"
    )
    cred = Credential(user_token(member), str(project_id))
    for endpoint in ENDPOINTS:
        assert_error(call(api_client, endpoint, cred, world), 404, "PROJECT_NOT_FOUND")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/v1/analyses"),
        ("PUT", "/v1/analyses/{analysis}"),
        ("PATCH", "/v1/analyses/{analysis}"),
        ("GET", "/v1/analyses/{analysis}/follow-ups"),
        ("DELETE", "/v1/analyses/{analysis}/feedback"),
        ("PATCH", "/v1/config"),
        ("GET", "/v1/config/channels"),
    ],
)
def test_unsupported_method_is_method_not_allowed(api_client, credential, world, method, path):
    cred = credential("secret")
    response = send(api_client, method, path.format(**world), credential=cred.token)
    assert_error(response, 405, "METHOD_NOT_ALLOWED")


def test_invalid_body_is_validation_error_with_fields(api_client, credential):
    cred = credential("secret")
    response = send(
        api_client, "POST", "/v1/analyses", credential=cred.token, body={"title": 1, "input": ""}
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert set(error["details"]["fields"]) == {"title", "input"}


def test_unknown_analysis_is_not_found(api_client, credential):
    cred = credential("secret")
    response = send(
        api_client,
        "GET",
        "/v1/analyses/7d2c3a2e-0000-4000-8000-000000000000",
        credential=cred.token,
    )
    assert_error(response, 404, "NOT_FOUND")


@pytest.mark.parametrize(
    "path",
    ["/v1/analyses", "/v1/analyses/{analysis}", "/v1/config"],
    ids=["list", "detail", "config"],
)
def test_head_needs_the_permission_of_get(api_client, credential, world, path):
    cred = credential("secret", permissions=[CONFIG_WRITE])
    response = api_client.head(path.format(**world), HTTP_AUTHORIZATION=f"Bearer {cred.token}")
    assert response.status_code == 403


def test_repeated_failures_from_one_address_are_rate_limited_but_valid_keys_are_not(
    api_client, credential, settings
):
    settings.THROTTLE_RATES = settings.THROTTLE_RATES | {"failed_auth_ip": (3, 60)}
    cred = credential("secret")
    bad = mutate(cred.token, 20)
    for _ in range(3):
        assert_error(send(api_client, "GET", "/v1/analyses", credential=bad), 401, "KEY_INVALID")
    limited = send(api_client, "GET", "/v1/analyses", credential=bad)
    assert_error(limited, 429, "RATE_LIMITED")
    assert 1 <= int(limited["Retry-After"]) <= 60
    assert send(api_client, "GET", "/v1/analyses", credential=cred.token).status_code == 200
    elsewhere = send(api_client, "GET", "/v1/analyses", credential=bad, **fresh_ip())
    assert_error(elsewhere, 401, "KEY_INVALID")


class TestOrderOfChecks:
    """SPEC §3: header shape → prefix → sunset → checksum → lookup → revoked → expired →
    project resolution → permission."""

    def test_revocation_is_reported_before_a_bad_project_id(self, api_client, credential, owner):
        cred = credential("org")
        revoke_key(actor=owner, api_key=ApiKey.objects.get())
        response = send(api_client, "GET", "/v1/config", credential=cred.token, project_id="nope")
        assert_error(response, 401, "KEY_REVOKED")

    def test_project_resolution_comes_before_permission(
        self, api_client, credential, other_project
    ):
        cred = credential("secret", permissions=[READ])
        response = send(
            api_client, "GET", "/v1/config", credential=cred.token, project_id=other_project.id
        )
        assert_error(response, 403, "PROJECT_MISMATCH")

    def test_permission_comes_before_body_validation(self, api_client, credential):
        cred = credential("secret", permissions=[READ])
        response = send(api_client, "POST", "/v1/analyses", credential=cred.token, body=[1])
        assert_error(response, 403, "PERMISSION_DENIED")

    def test_authentication_comes_before_method(self, api_client):
        response = api_client.delete("/v1/analyses", HTTP_AUTHORIZATION="Basic x")
        assert_error(response, 401, "AUTHORIZATION_MALFORMED")


# --- Secrecy ------------------------------------------------------------------------------


def _random_part(key: str) -> str:
    return keyformat.KEY_PATTERN.fullmatch(key).group(2)


def _hidden_parts(key: str) -> list[str]:
    """Pieces of a key that nothing may show: the display prefix reveals only the first
    8 random characters, so any 8 characters past them (or the random part's end) leak it."""
    random_part = _random_part(key)
    return [random_part[8:16], random_part[-8:]]


def test_credentials_are_never_echoed_in_responses_or_logs(
    api_client, credential, world, owner, other_project, caplog
):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sigsentry")
    creds = [credential(who) for who in ("pub", "secret", "org", "member")]
    responses = []
    for cred in creds:
        for endpoint in ENDPOINTS:
            responses.append(call(api_client, endpoint, cred, world))
        responses.append(
            send(api_client, "GET", "/v1/config", credential=cred.token, project_id="bad")
        )
        responses.append(
            send(
                api_client, "GET", "/v1/config", credential=cred.token, project_id=other_project.id
            )
        )
        responses.append(send(api_client, "GET", "/v1/me", credential=cred.token))
        responses.append(send(api_client, "GET", "/v1/me", credential=mutate(cred.token, 12)))
        responses.append(api_client.get("/v1/me", HTTP_AUTHORIZATION=f"Basic {cred.token}"))
        responses.append(api_client.get("/v1/me", HTTP_AUTHORIZATION=f"Bearer {cred.token} x"))
    for api_key in ApiKey.objects.all():
        revoke_key(actor=owner, api_key=api_key)
    for cred in creds[:3]:
        responses.append(send(api_client, "GET", "/v1/analyses", credential=cred.token))
    secrets = [c.token for c in creds] + [p for c in creds[:3] for p in _hidden_parts(c.token)]
    for response in responses:
        exposed = response.content.decode() + repr(sorted(response.items()))
        for secret in secrets:
            assert secret not in exposed
    for secret in secrets:
        assert secret not in caplog.text
    assert {r.status_code for r in responses} >= {200, 201, 204, 400, 401, 403}


def _database_text() -> list[tuple[str, str]]:
    """Every cell of every table as text (bytes decoded as UTF-8, anything else via str)."""
    cells = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            for row in cursor.fetchall():
                for cell in row:
                    if isinstance(cell, bytes | memoryview):
                        cell = bytes(cell).decode("utf-8", "replace")
                    cells.append((table, str(cell)))
    return cells


def test_database_never_holds_a_key_or_session_token(
    api_client, credential, world, owner, organization, project
):
    creds = {who: credential(who) for who in ("pub", "secret", "org", "owner")}
    rolled = roll_key(
        actor=owner, api_key=ApiKey.objects.get(scope="project", type="secret"), grace_seconds=60
    )
    for cred in creds.values():
        for endpoint in ENDPOINTS:
            call(api_client, endpoint, cred, world)
        send(api_client, "GET", "/v1/analyses?api_key=" + cred.token)
    send(api_client, "GET", "/v1/analyses", credential=rolled.key)
    report_leaked_keys(candidates=[creds["pub"].token, "ss_secret_nope"])
    keys = [c.token for w, c in creds.items() if w != "owner"] + [rolled.key]
    needles = keys + [part for k in keys for part in _hidden_parts(k)]
    needles.append(creds["owner"].token)
    cells = _database_text()
    assert len(cells) > 100  # the scan saw the data
    assert any(
        api_key.digest in text for api_key in ApiKey.objects.all() for _, text in cells
    )  # digests are there, so the scan reads the key table
    leaks = [(table, needle[:12]) for table, text in cells for needle in needles if needle in text]
    assert leaks == []


def test_credentials_in_the_query_string_are_ignored(api_client, credential, project):
    key = credential("secret").token
    token = credential("owner").token
    for query in (f"api_key={key}", f"access_token={token}", f"key={key}", f"token={token}"):
        response = api_client.get(f"/v1/analyses?{query}", HTTP_X_PROJECT_ID=str(project.id))
        assert_error(response, 401, "AUTHENTICATION_REQUIRED")
        assert response["WWW-Authenticate"] == WWW_AUTHENTICATE


# --- Tenant isolation ----------------------------------------------------------------------


@pytest.fixture
def intruders(foreign_project, outsider, user_token, project):
    """Credentials of callers outside `project`, each aimed at it as directly as it can be."""
    rival_org_key = make_key(KeyKind.ORGANIZATION, organization=foreign_project.organization)[1]
    rival_secret = make_key(KeyKind.SECRET, project=foreign_project)[1]
    return {
        "rival-org-key": (Credential(rival_org_key, str(project.id)), 404, "PROJECT_NOT_FOUND"),
        "outsider-user": (
            Credential(user_token(outsider), str(project.id)),
            404,
            "PROJECT_NOT_FOUND",
        ),
        "rival-project-key": (Credential(rival_secret, str(project.id)), 403, "PROJECT_MISMATCH"),
    }


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
@pytest.mark.parametrize("intruder", ["rival-org-key", "outsider-user", "rival-project-key"])
def test_callers_outside_the_project_get_no_data_and_change_nothing(
    api_client, intruders, world, endpoint, intruder
):
    cred, status, code = intruders[intruder]
    before = snapshot()
    response = call(api_client, endpoint, cred, world)
    assert_error(response, status, code)
    assert snapshot() == before
    for private in (b"our incident", b"our private logs", b"our-source", b"our-channel", b"#ours"):
        assert private not in response.content


@pytest.mark.parametrize("endpoint", [e for e in ENDPOINTS if "{" in e.path], ids=lambda e: e.name)
@pytest.mark.parametrize("who", ["rival-own-project", "sibling-project-key"])
def test_ids_of_another_project_are_not_found_from_the_callers_own_project(
    api_client, world, foreign_project, other_project, endpoint, who
):
    home = foreign_project if who == "rival-own-project" else other_project
    cred = Credential(make_key(KeyKind.SECRET, project=home)[1], None)
    before = snapshot()
    response = call(api_client, endpoint, cred, world)
    assert_error(response, 404, "NOT_FOUND")
    assert snapshot() == before


def test_lists_from_another_project_never_contain_this_projects_data(
    api_client, world, other_project, foreign_project
):
    for home in (other_project, foreign_project):
        key = make_key(KeyKind.SECRET, project=home)[1]
        analyses = send(api_client, "GET", "/v1/analyses", credential=key)
        config = send(api_client, "GET", "/v1/config", credential=key)
        assert analyses.json() == {"results": [], "next": None}
        assert config.json() == {"logSources": [], "channels": []}


# --- lastUsedAt ----------------------------------------------------------------------------


def _last_use_writes(ctx) -> list[str]:
    return [
        q["sql"]
        for q in ctx.captured_queries
        if q["sql"].lstrip().upper().startswith("UPDATE") and "last_used_at" in q["sql"]
    ]


@pytest.mark.parametrize("who", ["pub", "secret", "org"])
def test_a_burst_of_requests_writes_last_used_at_once(api_client, credential, project, who):
    cred = credential(who)
    with CaptureQueriesContext(connection) as ctx:
        for _ in range(20):
            response = send(
                api_client,
                "GET",
                "/v1/analyses",
                credential=cred.token,
                project_id=cred.project_header,
            )
            assert response.status_code == 200
    assert len(_last_use_writes(ctx)) == 1
    api_key = ApiKey.objects.get()
    assert timezone.now() - api_key.last_used_at < timedelta(seconds=30)
    expected_project = project.id if who == "org" else None
    assert api_key.last_used_project_id == expected_project


def test_last_used_at_is_written_again_after_a_minute(api_client, credential):
    cred = credential("secret")
    send(api_client, "GET", "/v1/analyses", credential=cred.token)
    minute_ago = timezone.now() - timedelta(seconds=61)
    ApiKey.objects.update(last_used_at=minute_ago)
    with CaptureQueriesContext(connection) as ctx:
        send(api_client, "GET", "/v1/analyses", credential=cred.token)
    assert len(_last_use_writes(ctx)) == 1
    assert ApiKey.objects.get().last_used_at > minute_ago


def test_org_key_records_the_project_it_was_last_used_on(
    api_client, credential, project, other_project
):
    cred = credential("org")
    send(api_client, "GET", "/v1/config", credential=cred.token, project_id=project.id)
    ApiKey.objects.update(last_used_at=timezone.now() - timedelta(minutes=5))
    send(api_client, "GET", "/v1/config", credential=cred.token, project_id=other_project.id)
    assert ApiKey.objects.get().last_used_project_id == other_project.id


def test_authenticated_but_refused_requests_still_count_as_use(api_client, credential):
    """`lastUsedAt` tells whether anything still holds the key (SPEC §4.7, roll)."""
    cred = credential("secret", permissions=[READ])
    response = send(api_client, "GET", "/v1/config", credential=cred.token)
    assert_error(response, 403, "PERMISSION_DENIED")
    assert ApiKey.objects.get().last_used_at is not None


def test_refused_keys_do_not_count_as_use(api_client, credential, owner):
    cred = credential("secret")
    revoke_key(actor=owner, api_key=ApiKey.objects.get())
    send(api_client, "GET", "/v1/analyses", credential=cred.token)
    assert ApiKey.objects.get().last_used_at is None


@pytest.fixture
def last_use_write_refused():
    """A database trigger that makes every write of `last_used_at` fail (a real fault)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE FUNCTION refuse_last_use() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'last use refused'; END $$"
            )
            cursor.execute(
                "CREATE TRIGGER refuse_last_use BEFORE UPDATE OF last_used_at "
                "ON apikeys_apikey FOR EACH ROW EXECUTE FUNCTION refuse_last_use()"
            )
        else:
            cursor.execute(
                "CREATE TRIGGER refuse_last_use BEFORE UPDATE OF last_used_at "
                "ON apikeys_apikey BEGIN SELECT RAISE(ABORT, 'last use refused'); END"
            )
    # The test transaction is rolled back afterwards, trigger and function included.


@pytest.mark.parametrize("who", ["secret", "org"])
def test_request_succeeds_when_last_used_at_cannot_be_written(
    api_client, credential, world, last_use_write_refused, who, caplog
):
    cred = credential(who)
    for name in ("analyses-list", "analyses-create", "log-source-create"):
        endpoint = ENDPOINT[name]
        response = call(api_client, endpoint, cred, world)
        assert response.status_code == endpoint.success, response.content
    assert ApiKey.objects.get().last_used_at is None
    assert Analysis.objects.filter(title="t").count() == 1  # the create was not rolled back
    assert "could not record last use" in caplog.text


# --- Queries per request --------------------------------------------------------------------


def _queries(client, cred: Credential, path: str) -> list[str]:
    send(client, "GET", path, credential=cred.token, project_id=cred.project_header)  # warm-up
    with CaptureQueriesContext(connection) as ctx:
        response = send(client, "GET", path, credential=cred.token, project_id=cred.project_header)
    assert response.status_code == 200
    return [q["sql"] for q in ctx.captured_queries]


def _resource_queries(queries: list[str]) -> list[str]:
    tables = ("analyses_", "projects_logsource", "projects_channel")
    return [q for q in queries if any(t in q.split(" WHERE ")[0] for t in tables)]


@pytest.mark.parametrize("who", ["pub", "secret"])
def test_project_key_costs_one_query_on_me(api_client, credential, who):
    assert len(_queries(api_client, credential(who), "/v1/me")) == 1


def test_org_key_costs_at_most_two_queries_with_a_project_id(api_client, credential, world):
    cred = credential("org")
    assert len(_queries(api_client, cred, "/v1/me")) <= 2
    config = _queries(api_client, cred, "/v1/config")
    assert len(config) - len(_resource_queries(config)) == 2  # key, then project
    assert len(_resource_queries(config)) == 2  # log sources, channels


@pytest.mark.parametrize(
    ("who", "path", "expected"),
    [
        ("secret", "/v1/config", 3),
        ("secret", "/v1/analyses", 4),
        ("secret", "/v1/analyses/{analysis}", 4),
        ("org", "/v1/analyses", 5),
        ("member", "/v1/config", 4),
        ("member", "/v1/analyses", 5),
    ],
)
def test_resource_endpoints_stay_within_their_query_budget(
    api_client, credential, world, who, path, expected
):
    """Authentication + project (1 for project keys, 2 for org keys and users) + the resource."""
    assert len(_queries(api_client, credential(who), path.format(**world))) == expected


# --- Properties -----------------------------------------------------------------------------

_KEYISH = st.sampled_from(["ss_pub_", "ss_secret_", "ss_org_", "tb_", "ss_live_", "ss_", "eyJ", ""])
_TOKEN_CHARS = st.characters(codec="ascii", exclude_characters="\r\n")
AUTHORIZATION_VALUES = st.one_of(
    st.text(max_size=100),
    st.builds(
        lambda scheme, prefix, rest: f"{scheme}{prefix}{rest}",
        st.sampled_from(["Bearer ", "bearer ", "Bearer  ", "Basic ", "", "Bearer\t"]),
        _KEYISH,
        st.text(alphabet=_TOKEN_CHARS, max_size=80),
    ),
    st.builds(
        lambda body: f"Bearer {body}",
        st.from_regex(
            r"[A-Za-z0-9_\-]{1,40}\.[A-Za-z0-9_\-]{1,60}\.[A-Za-z0-9_\-]{0,40}", fullmatch=True
        ),
    ),
)
PROJECT_ID_VALUES = st.one_of(st.none(), st.text(max_size=60), st.uuids().map(str))
_property_settings = hypothesis_settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _assert_spec_error_or_success(response, sent: str) -> None:
    assert response.status_code < 500, response.content
    if response.status_code >= 400:
        assert error_code(response) in SPEC_CODES
    if len(sent) >= 12:
        assert sent not in response.content.decode()


@_property_settings
@given(
    authorization=AUTHORIZATION_VALUES,
    project_id=PROJECT_ID_VALUES,
    endpoint=st.sampled_from(READ_ENDPOINTS),
)
def test_no_authorization_or_project_header_value_causes_a_server_error(
    api_client, world, authorization, project_id, endpoint
):
    cache.clear()  # each example starts below the failed-authentication throttle
    extra = {"HTTP_AUTHORIZATION": authorization}
    if project_id is not None:
        extra["HTTP_X_PROJECT_ID"] = project_id
    response = api_client.get(endpoint.path.format(**world), **extra)
    _assert_spec_error_or_success(response, authorization)
    assert response.status_code in (400, 401, 403, 404)


@pytest.fixture
def keys_by_kind(project, organization):
    return {
        "secret": make_key(KeyKind.SECRET, project=project)[1],
        "org": make_key(KeyKind.ORGANIZATION, organization=organization)[1],
    }


@_property_settings
@given(project_id=PROJECT_ID_VALUES, who=st.sampled_from(["secret", "org"]))
def test_any_project_header_with_a_valid_key_is_answered_per_spec(
    api_client, keys_by_kind, world, project_id, who
):
    cache.clear()
    extra = {"HTTP_AUTHORIZATION": f"Bearer {keys_by_kind[who]}"}
    if project_id is not None:
        extra["HTTP_X_PROJECT_ID"] = project_id
    response = api_client.get("/v1/analyses", **extra)
    _assert_spec_error_or_success(response, keys_by_kind[who])
    assert response.status_code in (200, 400, 403, 404)


# --- Across server processes ------------------------------------------------------------------


def _status_of(url: str, key: str) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, ""
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())["error"]["code"]


@pytest.mark.slow
def test_revocation_applies_at_once_on_every_server_process(live_url, owner, project):
    """Two gunicorn workers: after warming both, the first request after revocation fails."""
    api_key, key = make_key(KeyKind.SECRET, project=project)
    for _ in range(6):
        assert _status_of(f"{live_url}/v1/analyses", key) == (200, "")
    revoke_key(actor=owner, api_key=api_key)
    for _ in range(6):
        assert _status_of(f"{live_url}/v1/analyses", key) == (401, "KEY_REVOKED")
