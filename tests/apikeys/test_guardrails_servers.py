"""Guardrails over HTTP against two gunicorn servers on one PostgreSQL and one Redis (SPEC §4.10).

Every check alternates between the servers (2 workers each), so what one process
decides (a limit's budget, a PATCH) must hold in the others. The servers trust one
proxy (`NUM_PROXIES=1`), so each request chooses its client IP with X-Forwarded-For.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import timedelta
from itertools import cycle

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from apps.apikeys.keyformat import KeyKind
from apps.audit.models import AuditEvent
from core.times import iso
from tests.conftest import access_token_for
from tests.orgs.helpers import collection_url, key_url
from tests.servers import GunicornServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]  # real servers

INSIDE_V4, INSIDE_V6 = "203.0.113.77", "2001:db8:5::1"
OUTSIDE_V4, OUTSIDE_V6 = "198.51.100.77", "2001:db9::1"


@pytest.fixture(scope="module")
def servers(django_db_setup, django_db_blocker):
    if connection.vendor != "postgresql":
        pytest.skip("the two-server checks run on PostgreSQL, the production database")
    if not settings.REDIS_URL:
        pytest.skip("rate limits are shared across processes only through REDIS_URL")
    with django_db_blocker.unblock():
        pair = [GunicornServer(env={"NUM_PROXIES": "1"}).start() for _ in range(2)]
    yield pair
    for server in pair:
        server.stop()


def call(server, method, path, credential, body=None, ip=INSIDE_V4, project=None):
    """(status, JSON body, headers) of one request; `ip` is the client the proxy saw."""
    headers = {"Authorization": f"Bearer {credential}", "X-Forwarded-For": ip}
    if body is not None:
        headers["Content-Type"] = "application/json"
    if project is not None:
        headers["X-Project-Id"] = str(project.id)
    request = urllib.request.Request(
        server.url + path,
        data=None if body is None else json.dumps(body).encode(),
        headers=headers,
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, json.loads(response.read() or b"null"), response.headers
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), error.headers


def code(body) -> str:
    return body["error"]["code"]


def mint(server, jwt, kind, project, **fields):
    body = {"name": "guarded", "permissions": ["analysis:read"]} | fields
    if kind is KeyKind.PUBLIC:
        del body["permissions"]
    return call(server, "POST", collection_url(kind, project), jwt, body)


def test_a_rate_limit_holds_across_servers_and_lifting_it_works_at_once(servers, owner, project):
    jwt = access_token_for(owner)
    status, minted, _ = mint(
        servers[0], jwt, KeyKind.SECRET, project, rateLimit={"requests": 5, "perSeconds": 60}
    )
    assert status == 201
    key = minted["key"]

    answers = [
        call(server, "GET", "/v1/analyses", key, project=project)
        for server, _ in zip(cycle(servers), range(12), strict=False)
    ]

    statuses = [status for status, _, _ in answers]
    assert statuses == [200] * 5 + [429] * 7
    remaining = [headers["X-RateLimit-Remaining"] for _, _, headers in answers]
    assert remaining == ["4", "3", "2", "1", "0"] + ["0"] * 7
    assert {headers["X-RateLimit-Limit"] for _, _, headers in answers} == {"5"}
    for _, body, headers in answers[5:]:
        assert code(body) == "RATE_LIMITED"
        assert 1 <= int(headers["Retry-After"]) <= 60
        assert int(headers["X-RateLimit-Reset"]) > timezone.now().timestamp()

    # The key cannot lift its own limit; its owner can, on either server.
    url = key_url(KeyKind.SECRET, project, minted["id"])
    status, body, _ = call(servers[1], "PATCH", url, key, {"rateLimit": None})
    assert (status, code(body)) == (403, "KEY_MANAGEMENT_FORBIDDEN")
    status, body, _ = call(servers[1], "PATCH", url, jwt, {"rateLimit": None})
    assert (status, body["rateLimit"]) == (200, None)

    for server in servers:
        status, _, headers = call(server, "GET", "/v1/analyses", key, project=project)
        assert status == 200
        assert "X-RateLimit-Limit" not in headers
    event = AuditEvent.objects.get(action="key.updated")
    assert event.details["fields"] == ["rateLimit"]
    assert event.details["before"] == {"rateLimit": {"requests": 5, "perSeconds": 60}}
    assert event.details["after"] == {"rateLimit": None}


@pytest.mark.parametrize("kind", [KeyKind.SECRET, KeyKind.ORGANIZATION], ids=["secret", "org"])
def test_ip_allowlists_v4_and_v6(servers, owner, project, kind):
    jwt = access_token_for(owner)
    status, minted, _ = mint(
        servers[0], jwt, kind, project, allowedIps=["203.0.113.0/24", "2001:db8::/32"]
    )
    assert status == 201
    key = minted["key"]

    for server in servers:
        for ip in (INSIDE_V4, INSIDE_V6):
            assert call(server, "GET", "/v1/analyses", key, ip=ip, project=project)[0] == 200
        for ip in (OUTSIDE_V4, OUTSIDE_V6):
            status, body, _ = call(server, "GET", "/v1/analyses", key, ip=ip, project=project)
            assert (status, code(body)) == (403, "IP_NOT_ALLOWED")


def test_sdk_keys_with_ips_and_garbage_cidrs_are_refused(servers, owner, project):
    jwt = access_token_for(owner)

    sdk = mint(servers[0], jwt, KeyKind.PUBLIC, project, allowedIps=["203.0.113.0/24"])
    garbage = mint(servers[1], jwt, KeyKind.SECRET, project, allowedIps=["203.0.113.0/33"])

    for status, body, _ in (sdk, garbage):
        assert (status, code(body)) == (400, "VALIDATION_ERROR")
        assert list(body["error"]["details"]["fields"]) == ["allowedIps"]


def test_an_org_key_confined_to_one_project_and_widened(
    servers, owner, project, other_project, outsider
):
    jwt = access_token_for(owner)
    status, minted, _ = mint(
        servers[0], jwt, KeyKind.ORGANIZATION, project, projectIds=[str(project.id)]
    )
    assert status == 201
    key = minted["key"]

    assert call(servers[1], "GET", "/v1/analyses", key, project=project)[0] == 200
    status, body, _ = call(servers[1], "GET", "/v1/analyses", key, project=other_project)
    assert (status, code(body)) == (403, "PROJECT_MISMATCH")

    url = key_url(KeyKind.ORGANIZATION, project, minted["id"])
    status, body, _ = call(servers[0], "PATCH", url, jwt, {"projectIds": []})
    assert (status, body["projectIds"]) == (200, [])
    for server in servers:
        assert call(server, "GET", "/v1/analyses", key, project=other_project)[0] == 200

    foreign = outsider.memberships.get().organization.projects.get()
    status, body, _ = call(servers[1], "PATCH", url, jwt, {"projectIds": [str(foreign.id)]})
    assert (status, list(body["error"]["details"]["fields"])) == (400, ["projectIds"])
    misplaced = mint(servers[1], jwt, KeyKind.SECRET, project, projectIds=[str(project.id)])
    assert (misplaced[0], list(misplaced[1]["error"]["details"]["fields"])) == (400, ["projectIds"])


def test_a_30_day_policy_in_both_secret_key_collections(servers, owner, organization, project):
    jwt = access_token_for(owner)
    org_path = f"/v1/organizations/{organization.id}"
    status, body, _ = call(servers[0], "PATCH", org_path, jwt, {"keyMaxLifetimeDays": 30})
    assert (status, body["keyMaxLifetimeDays"]) == (200, 30)
    within = iso(timezone.now() + timedelta(days=29))
    beyond = iso(timezone.now() + timedelta(days=31))

    for server, kind in zip(servers, (KeyKind.SECRET, KeyKind.ORGANIZATION), strict=True):
        for expires_at in ({}, {"expiresAt": None}, {"expiresAt": beyond}):
            status, body, _ = mint(server, jwt, kind, project, **expires_at)
            assert (status, list(body["error"]["details"]["fields"])) == (400, ["expiresAt"])
        assert mint(server, jwt, kind, project, expiresAt=within)[0] == 201
    assert mint(servers[0], jwt, KeyKind.PUBLIC, project)[0] == 201

    status, body, _ = call(servers[1], "PATCH", org_path, jwt, {"keyMaxLifetimeDays": None})
    assert (status, body["keyMaxLifetimeDays"]) == (200, None)
    for server, kind in zip(servers, (KeyKind.ORGANIZATION, KeyKind.SECRET), strict=True):
        assert mint(server, jwt, kind, project)[0] == 201


def test_requests_refused_before_the_rate_limit_consume_no_budget(
    servers, owner, project, other_project
):
    jwt = access_token_for(owner)
    status, minted, _ = mint(
        servers[0],
        jwt,
        KeyKind.ORGANIZATION,
        project,
        rateLimit={"requests": 2, "perSeconds": 60},
        allowedIps=["203.0.113.0/24"],
        projectIds=[str(project.id)],
    )
    assert status == 201
    key = minted["key"]

    for server in servers:
        status, body, _ = call(server, "GET", "/v1/analyses", key, ip=OUTSIDE_V4, project=project)
        assert code(body) == "IP_NOT_ALLOWED"
        status, body, _ = call(server, "GET", "/v1/analyses", key, project=other_project)
        assert code(body) == "PROJECT_MISMATCH"

    statuses = [
        call(server, "GET", "/v1/analyses", key, project=project)[0]
        for server in (*servers, servers[0])
    ]
    assert statuses == [200, 200, 429]
