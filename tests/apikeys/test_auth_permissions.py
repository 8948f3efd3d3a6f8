"""Who reaches what on the project-scoped endpoints (SPEC §2.1, §2.2): every credential
kind and role, and keys minted with one permission, against every endpoint."""

from __future__ import annotations

import pytest

from core.permissions import ALL_PERMISSIONS
from tests.analyses.helpers import send
from tests.apikeys.auth_helpers import (
    CONFIG_READ,
    CONFIG_WRITE,
    CREATE,
    ENDPOINT,
    ENDPOINTS,
    READ,
    Credential,
    assert_error,
    call,
    snapshot,
)
from tests.conftest import bearer

pytestmark = pytest.mark.django_db


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


@pytest.mark.parametrize(
    ("path", "required"),
    [("/v1/analyses", READ), ("/v1/analyses/{analysis}", READ), ("/v1/config", CONFIG_READ)],
    ids=["list", "detail", "config"],
)
def test_head_needs_the_permission_of_get(api_client, credential, world, path, required):
    url = path.format(**world)
    others = [permission for permission in ALL_PERMISSIONS if permission != required]
    refused = api_client.head(url, **bearer(credential("secret", permissions=others).token))
    allowed = api_client.head(url, **bearer(credential("secret", permissions=[required]).token))

    assert refused.status_code == 403
    # A HEAD answer carries no body; DRF's Response still holds the error it stands for.
    assert refused.data["error"]["code"] == "PERMISSION_DENIED"
    assert refused.data["error"]["details"] == {"required": required}
    assert allowed.status_code == 200


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
@pytest.mark.parametrize("kind", ["secret", "org"])
def test_options_describes_an_endpoint_only_to_a_key_that_may_call_it(
    api_client, credential, world, kind, endpoint
):
    """OPTIONS (DRF's description of a view; CORS preflights never reach a view) needs the
    view's GET permission, or a write-only view's: not a way past the permission step."""
    path = endpoint.path.format(**world)
    methods = [e for e in ENDPOINTS if e.path == endpoint.path]
    needed = next((e.permission for e in methods if e.method == "GET"), methods[0].permission)
    others = [p for p in ALL_PERMISSIONS if p != needed]
    for permissions, allowed in (([needed], True), (others, False)):
        cred = credential(kind, permissions=permissions)
        response = send(
            api_client, "OPTIONS", path, credential=cred.token, project_id=cred.project_header
        )
        if allowed:
            assert response.status_code == 200, response.content
        else:
            error = assert_error(response, 403, "PERMISSION_DENIED")
            assert error["details"] == {"required": needed}
