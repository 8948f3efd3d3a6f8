"""API keys on the project-scoped endpoints (SPEC §2.1, §3): invalid, revoked, expired
and rolled keys, in one process and across server processes."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.apikeys import keyformat
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from apps.apikeys.services import revoke_key, roll_key
from tests.analyses.helpers import error_code, send
from tests.apikeys.auth_helpers import (
    READ_ENDPOINTS,
    WWW_AUTHENTICATE_INVALID,
    assert_error,
    call,
    fresh_ip,
    mutate,
)
from tests.factories import make_key

pytestmark = pytest.mark.django_db


def _unknown_key(kind: KeyKind) -> str:
    return keyformat.generate(kind)


#: SPEC §2.1's shape, written out: only the checksum comparison can refuse a key of this shape.
WELL_FORMED = re.compile(r"ss_(pub|secret|org)_[0-9A-Za-z]{38}")


def _bad_checksum(kind: KeyKind) -> str:
    """A well-formed key whose last checksum character is wrong."""
    key = keyformat.generate(kind)
    candidate = mutate(key, -1)
    assert WELL_FORMED.fullmatch(candidate) and candidate[:-1] == key[:-1] != candidate
    return candidate


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
