"""Permissions at roll and an explicit null at mint (SPEC §4.3, §4.7, §4.10).

Permissions never change on a key (PATCH refuses them); a roll keeps the old key's by
default and takes `permissions` for the successor, validated exactly as at mint. For an
SDK key `permissions` is omitted or the locked set: an explicit null is not omitted.
"""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from apps.apikeys import services
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from apps.audit.models import AuditEvent
from core.errors import PermissionsLocked
from core.permissions import ALL_PERMISSIONS, SDK_LOCKED_PERMISSIONS
from tests.factories import make_key
from tests.orgs.helpers import collection_url, error_code, error_fields, key_url, user_client

pytestmark = pytest.mark.django_db

SECRET_KINDS = [KeyKind.SECRET, KeyKind.ORGANIZATION]
SECRET_IDS = ["project-api-keys", "org-api-keys"]


def roll(client, kind, project, api_key, **fields):
    body = {"graceSeconds": 0} | fields
    return client.post(key_url(kind, project, api_key, "roll"), body, format="json")


# Roll


@pytest.mark.parametrize("kind", SECRET_KINDS, ids=SECRET_IDS)
def test_roll_gives_the_successor_the_permissions_sent(owner, project, kind):
    old, _ = make_key(kind, project=project, permissions=list(ALL_PERMISSIONS))

    response = roll(
        user_client(owner), kind, project, old, permissions=["config:read", "analysis:read"]
    )

    assert response.status_code == 201
    assert response.json()["permissions"] == ["analysis:read", "config:read"]
    assert ApiKey.objects.get(id=response.json()["id"]).permissions == [
        "analysis:read",
        "config:read",
    ]
    old.refresh_from_db()
    assert old.permissions == list(ALL_PERMISSIONS)  # a key's own permissions never change
    details = AuditEvent.objects.get(action="key.rolled").details
    assert details["permissions"] == ["analysis:read", "config:read"]
    assert details["previousPermissions"] == list(ALL_PERMISSIONS)


def test_the_successors_permissions_are_in_force(owner, project):
    old, _ = make_key(KeyKind.SECRET, project=project, permissions=list(ALL_PERMISSIONS))
    new = roll(
        user_client(owner), KeyKind.SECRET, project, old, permissions=["analysis:read"]
    ).json()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {new['key']}")

    assert client.get("/v1/analyses").status_code == 200
    refused = client.post("/v1/analyses", {"title": "t", "input": "i"}, format="json")
    assert (refused.status_code, error_code(refused)) == (403, "PERMISSION_DENIED")


def test_a_roll_without_permissions_keeps_them_and_records_no_previous_ones(owner, project):
    old, _ = make_key(KeyKind.SECRET, project=project, permissions=["config:read"])

    response = roll(user_client(owner), KeyKind.SECRET, project, old)

    assert response.json()["permissions"] == ["config:read"]
    assert "previousPermissions" not in AuditEvent.objects.get(action="key.rolled").details


def test_an_sdk_key_rolled_with_the_locked_set_is_rolled(owner, project):
    old, _ = make_key(KeyKind.PUBLIC, project=project)

    response = roll(
        user_client(owner),
        KeyKind.PUBLIC,
        project,
        old,
        permissions=["analysis:read", "analysis:create"],
    )

    assert response.status_code == 201
    assert response.json()["permissions"] == list(SDK_LOCKED_PERMISSIONS)


@pytest.mark.parametrize(
    ("kind", "permissions", "code"),
    [
        (KeyKind.PUBLIC, ["analysis:read"], "PERMISSIONS_LOCKED"),
        (KeyKind.PUBLIC, list(ALL_PERMISSIONS), "PERMISSIONS_LOCKED"),
        (KeyKind.PUBLIC, None, "PERMISSIONS_LOCKED"),
        (KeyKind.SECRET, ["analysis:delete"], "VALIDATION_ERROR"),
        (KeyKind.SECRET, [], "VALIDATION_ERROR"),
        (KeyKind.SECRET, None, "VALIDATION_ERROR"),
        (KeyKind.ORGANIZATION, "analysis:read", "VALIDATION_ERROR"),
        (KeyKind.ORGANIZATION, [1], "VALIDATION_ERROR"),
    ],
    ids=str,
)
def test_a_roll_with_permissions_mint_refuses_is_refused_and_changes_nothing(
    owner, project, kind, permissions, code
):
    old, _ = make_key(kind, project=project)
    before = list(old.permissions)

    response = roll(user_client(owner), kind, project, old, permissions=permissions)

    assert (response.status_code, error_code(response)) == (400, code)
    if code == "VALIDATION_ERROR":
        assert list(error_fields(response)) == ["permissions"]
    assert ApiKey.objects.count() == 1
    old.refresh_from_db()
    assert (old.expires_at, old.permissions) == (None, before)
    assert not AuditEvent.objects.filter(action="key.rolled").exists()


def test_roll_key_takes_permissions_and_keeps_them_by_default(owner, project):
    old, _ = make_key(KeyKind.SECRET, project=project, permissions=["config:read"])

    kept = services.roll_key(actor=owner, api_key=old, grace_seconds=60)
    changed = services.roll_key(
        actor=owner, api_key=kept.api_key, grace_seconds=60, permissions=["config:write"]
    )

    assert kept.api_key.permissions == ["config:read"]
    assert changed.api_key.permissions == ["config:write"]


def test_roll_key_of_an_sdk_key_refuses_other_permissions(owner, project):
    old, _ = make_key(KeyKind.PUBLIC, project=project)

    with pytest.raises(PermissionsLocked):
        services.roll_key(actor=owner, api_key=old, grace_seconds=0, permissions=["config:read"])

    old.refresh_from_db()
    assert old.expires_at is None


@pytest.mark.parametrize("kind", list(KeyKind), ids=["sdk-keys", *SECRET_IDS])
def test_patching_permissions_points_at_rolling(owner, project, kind):
    api_key, _ = make_key(kind, project=project)

    response = user_client(owner).patch(
        key_url(kind, project, api_key), {"permissions": ["config:read"]}, format="json"
    )

    assert response.status_code == 400
    assert "roll" in error_fields(response)["permissions"][0]


def test_the_roll_body_documents_permissions(client):
    schemas = client.get("/v1/schema", {"format": "json"}).json()["components"]["schemas"]

    for kind in ("Sdk", "Secret", "Organization"):
        body = schemas[f"Roll{kind}KeyInputRequest"]
        assert body["properties"]["permissions"]["type"] == "array"
        assert "permissions" not in body.get("required", [])
    locked = schemas["RollSdkKeyInputRequest"]["properties"]["permissions"]
    assert locked["items"] == {"$ref": "#/components/schemas/SdkPermissionsEnum"}
    assert schemas["SdkPermissionsEnum"]["enum"] == ["analysis:create", "analysis:read"]


# An explicit null at mint


def test_an_sdk_key_minted_with_null_permissions_is_permissions_locked(owner, project):
    response = user_client(owner).post(
        collection_url(KeyKind.PUBLIC, project),
        {"name": "Web", "permissions": None},
        format="json",
    )

    assert (response.status_code, error_code(response)) == (400, "PERMISSIONS_LOCKED")
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize("kind", SECRET_KINDS, ids=SECRET_IDS)
def test_a_secret_key_minted_with_null_permissions_is_a_validation_error(owner, project, kind):
    response = user_client(owner).post(
        collection_url(kind, project), {"name": "CI", "permissions": None}, format="json"
    )

    assert (response.status_code, error_code(response)) == (400, "VALIDATION_ERROR")
    assert list(error_fields(response)) == ["permissions"]
    assert not ApiKey.objects.exists()


def test_callers_in_code_still_get_the_sdk_set_by_default(owner, project):
    """The dashboard form, seed data and factories pass None for an SDK key: the default."""
    api_key = services.mint_key(
        actor=owner,
        kind=KeyKind.PUBLIC,
        organization=project.organization,
        project=project,
        name="Web",
        permissions=None,
    ).api_key
    omitted = services.mint_key(
        actor=owner,
        kind=KeyKind.PUBLIC,
        organization=project.organization,
        project=project,
        name="Web 2",
    ).api_key

    assert api_key.permissions == omitted.permissions == list(SDK_LOCKED_PERMISSIONS)
