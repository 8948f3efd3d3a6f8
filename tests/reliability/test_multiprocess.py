"""Two gunicorn servers on one database: a change made through one holds on the other at once.

Each server runs one worker, so "server A" and "server B" are two processes
with their own memory; nothing may be cached in-process across requests.
"""

from __future__ import annotations

import pytest

from apps.accounts import services as account_services
from apps.apikeys.keyformat import KeyKind
from tests.factories import make_key
from tests.reliability.helpers import bearer, call
from tests.servers import GunicornServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_servers(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        servers = [GunicornServer(workers=1), GunicornServer(workers=1)]
    try:
        yield [server.start() for server in servers]
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def servers(two_servers, transactional_db):
    return two_servers


def test_a_key_revoked_through_one_server_is_rejected_by_the_other(servers, project, owner):
    a, b = servers
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)
    access = account_services.start_session(owner).access
    assert call(b.url, "GET", "/v1/me", headers=bearer(plaintext)).status == 200

    revoked = call(
        a.url,
        "POST",
        f"/v1/projects/{project.id}/api-keys/{api_key.id}/revoke",
        headers=bearer(access),
    )
    assert revoked.status == 200, revoked.body
    assert revoked.json["revokedAt"]

    reply = call(b.url, "GET", "/v1/me", headers=bearer(plaintext))
    assert (reply.status, reply.code) == (401, "KEY_REVOKED")


def test_a_logout_through_one_server_ends_the_session_on_the_other(servers, owner):
    a, b = servers
    pair = account_services.start_session(owner)
    assert call(b.url, "GET", "/v1/me", headers=bearer(pair.access)).status == 200

    logout = call(a.url, "POST", "/v1/auth/logout", headers=bearer(pair.access), body={})
    assert logout.status == 204, logout.body

    reply = call(b.url, "GET", "/v1/me", headers=bearer(pair.access))
    assert (reply.status, reply.code) == (401, "TOKEN_INVALID")
    reply = call(b.url, "POST", "/v1/auth/refresh", body={"refresh": pair.refresh})
    assert (reply.status, reply.code) == (401, "TOKEN_INVALID")


def test_a_role_change_through_one_server_applies_on_the_other(servers, project, owner, admin):
    a, b = servers
    owner_access = account_services.start_session(owner).access
    admin_headers = {
        **bearer(account_services.start_session(admin).access),
        "X-Project-Id": str(project.id),
    }
    body = {"title": "Checkout errors", "input": "ERROR payment declined"}
    created = call(b.url, "POST", "/v1/analyses", headers=admin_headers, body=body)
    assert created.status == 201, created.body

    demoted = call(
        a.url,
        "PATCH",
        f"/v1/organizations/{project.organization_id}/members/{admin.id}",
        headers=bearer(owner_access),
        body={"role": "viewer"},
    )
    assert demoted.status == 200, demoted.body

    refused = call(b.url, "POST", "/v1/analyses", headers=admin_headers, body=body)
    assert (refused.status, refused.code) == (403, "PERMISSION_DENIED")
    assert refused.json["error"]["details"]["required"] == "analysis:create"
    me = call(b.url, "GET", "/v1/me", headers=admin_headers)
    assert [m["role"] for m in me.json["memberships"]] == ["viewer"]
