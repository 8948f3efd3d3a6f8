"""GET /v1/me: who is calling, for a user and for each kind of key (SPEC §4.1)."""

from __future__ import annotations

import pytest

from apps.apikeys.keyformat import KeyKind
from core.permissions import ALL_PERMISSIONS, SDK_LOCKED_PERMISSIONS, Role
from tests.factories import MembershipFactory, OrganizationFactory, make_key, make_legacy_key
from tests.orgs.helpers import bearer_client, error_code, user_client

pytestmark = pytest.mark.django_db

ME = "/v1/me"


def test_me_with_a_jwt_names_the_user_and_every_membership(owner, organization):
    zeta = OrganizationFactory(name="Zeta")
    MembershipFactory(user=owner, organization=zeta, role=Role.VIEWER)

    response = user_client(owner).get(ME)

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    assert response.json() == {
        "type": "user",
        "user": {"id": str(owner.id), "email": owner.email},
        "memberships": [
            {"organization": {"id": str(organization.id), "name": "Acme"}, "role": "owner"},
            {"organization": {"id": str(zeta.id), "name": "Zeta"}, "role": "viewer"},
        ],
    }


def test_me_never_lists_organizations_the_user_is_not_in(owner, outsider):
    names = [m["organization"]["name"] for m in user_client(outsider).get(ME).json()["memberships"]]

    assert names == ["Elsewhere"]


@pytest.mark.parametrize(
    "kind, key_type, scope, permissions",
    [
        (KeyKind.PUBLIC, "public", "project", list(SDK_LOCKED_PERMISSIONS)),
        (KeyKind.SECRET, "secret", "project", ["analysis:read"]),
        (KeyKind.ORGANIZATION, "secret", "organization", list(ALL_PERMISSIONS)),
    ],
)
def test_me_with_a_key_describes_the_key(project, kind, key_type, scope, permissions):
    api_key, plaintext = make_key(
        kind,
        project=project,
        permissions=None if kind is KeyKind.PUBLIC else permissions,
        name="Deploys",
    )

    response = bearer_client(plaintext).get(ME)

    assert response.status_code == 200
    expected_project = {"id": str(project.id), "name": "Checkout"} if scope == "project" else None
    assert response.json() == {
        "type": "key",
        "key": {
            "id": str(api_key.id),
            "name": "Deploys",
            "prefix": api_key.prefix,
            "type": key_type,
            "scope": scope,
            "permissions": permissions,
            "legacy": False,
        },
        "organization": {"id": str(project.organization_id), "name": "Acme"},
        "project": expected_project,
    }
    assert plaintext not in response.content.decode()


@pytest.mark.usefixtures("before_the_sunset")
def test_me_with_a_legacy_key_says_legacy_and_carries_the_deprecation_headers(project):
    _api_key, legacy = make_legacy_key(
        project, plaintext="tb_LegacyKey0123456789abcdef", name="Old CI"
    )

    response = bearer_client(legacy).get(ME)

    assert response.status_code == 200
    assert response.json()["key"]["legacy"] is True
    assert response.json()["key"]["prefix"] == "tb_Legacy"  # a quarter of 25
    assert "Deprecation" in response
    assert "Sunset" in response


def test_me_without_a_credential_is_authentication_required(api_client):
    response = api_client.get(ME)

    assert response.status_code == 401
    assert error_code(response) == "AUTHENTICATION_REQUIRED"
    assert response["WWW-Authenticate"] == 'Bearer realm="sigsentry"'
