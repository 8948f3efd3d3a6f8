"""Key management API: the three collections, mint, list, read, revoke, origins (SPEC §4.3)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from apps.apikeys import keyformat
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from apps.audit.models import AuditEvent
from core.permissions import ALL_PERMISSIONS, SDK_LOCKED_PERMISSIONS
from tests.factories import ProjectFactory, make_key
from tests.orgs.helpers import (
    LEGACY_KEY,
    MANAGERS,
    ROLES,
    UNSHOWN_IN_NAMES,
    bearer_client,
    collection_url,
    cookie_client,
    error_code,
    error_fields,
    key_url,
    legacy_key,
    send,
    user_client,
    with_csrf,
)

pytestmark = pytest.mark.django_db

KEY_FIELDS = {
    "id",
    "name",
    "type",
    "scope",
    "prefix",
    "permissions",
    "status",
    "legacy",
    "createdAt",
    "createdBy",
    "expiresAt",
    "lastUsedAt",
    "revokedAt",
    "allowedOrigins",
    "allowedIps",
    "rateLimit",
    "lastUsedIp",
    "lastUsedUserAgent",
}
KINDS = list(KeyKind)
KIND_IDS = ["sdk-keys", "project-api-keys", "org-api-keys"]


def mint_body(kind: KeyKind, **fields) -> dict:
    body = {"name": "Deploys"}
    if kind is not KeyKind.PUBLIC:
        body["permissions"] = ["analysis:read", "config:read"]
    return body | fields


def mint(client, kind, project, **fields):
    return client.post(collection_url(kind, project), mint_body(kind, **fields), format="json")


# Mint


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_mint_returns_the_key_object_and_the_full_key_once(owner, project, kind):
    response = mint(user_client(owner), kind, project)

    assert response.status_code == 201
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    expected_fields = KEY_FIELDS | {"key"}
    if kind is KeyKind.ORGANIZATION:
        expected_fields |= {"lastUsedProjectId", "projectIds"}
    assert set(body) == expected_fields
    assert keyformat.parse(body["key"]).kind is kind
    api_key = ApiKey.objects.get(id=body["id"])
    assert api_key.digest == keyformat.digest(body["key"])
    assert body["prefix"] == api_key.prefix == keyformat.display_prefix(body["key"])
    assert (body["type"], body["scope"]) == (kind.key_type, kind.scope)
    assert body["status"] == "active"
    assert body["legacy"] is False
    assert body["createdBy"] == {"id": str(owner.id), "email": owner.email}
    assert body["revokedAt"] is body["lastUsedAt"] is body["expiresAt"] is None
    assert body["allowedOrigins"] == body["allowedIps"] == []
    assert body["rateLimit"] is body["lastUsedIp"] is body["lastUsedUserAgent"] is None
    assert bearer_client(body["key"]).get("/v1/me").status_code == 200


def test_org_keys_carry_last_used_project_id(owner, project):
    body = mint(user_client(owner), KeyKind.ORGANIZATION, project).json()

    assert body["lastUsedProjectId"] is None


def test_the_full_key_is_stored_nowhere(owner, project):
    plaintext = mint(user_client(owner), KeyKind.SECRET, project).json()["key"]

    event = AuditEvent.objects.get(action="key.minted")
    assert plaintext not in str(event.details)
    assert plaintext not in event.target_label
    row = ApiKey.objects.filter(prefix=plaintext[:18]).values().get()
    assert all(plaintext not in str(value) for value in row.values())


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_the_full_key_never_appears_when_listing_or_reading(owner, project, kind):
    client = user_client(owner)
    body = mint(client, kind, project).json()

    listing = client.get(collection_url(kind, project))
    detail = client.get(key_url(kind, project, body["id"]))

    for response in (listing, detail):
        assert response.status_code == 200
        assert body["key"] not in response.content.decode()
        assert "key" not in (
            response.json()["results"][0] if "results" in response.json() else response.json()
        )


def test_sdk_key_permissions_may_be_omitted_and_are_locked(admin, project):
    response = mint(user_client(admin), KeyKind.PUBLIC, project)

    assert response.json()["permissions"] == list(SDK_LOCKED_PERMISSIONS)


@pytest.mark.parametrize(
    "permissions",
    [["analysis:read"], list(ALL_PERMISSIONS), ["analysis:create", "analysis:create"], []],
)
def test_sdk_key_with_other_permissions_is_permissions_locked(owner, project, permissions):
    response = mint(user_client(owner), KeyKind.PUBLIC, project, permissions=permissions)

    assert response.status_code == 400
    assert error_code(response) == "PERMISSIONS_LOCKED"
    assert not ApiKey.objects.exists()


def test_sdk_key_with_the_locked_set_in_any_order_is_minted(owner, project):
    response = mint(
        user_client(owner),
        KeyKind.PUBLIC,
        project,
        permissions=["analysis:read", "analysis:create"],
    )

    assert response.status_code == 201


@pytest.mark.parametrize("kind", [KeyKind.SECRET, KeyKind.ORGANIZATION], ids=KIND_IDS[1:])
@pytest.mark.parametrize(
    "permissions", [None, [], ["analysis:delete"], "analysis:read", [1]], ids=str
)
def test_secret_keys_need_known_permissions(owner, project, kind, permissions):
    response = mint(user_client(owner), kind, project, permissions=permissions)

    assert response.status_code == 400
    assert "permissions" in error_fields(response)


@pytest.mark.parametrize("kind", [KeyKind.SECRET, KeyKind.ORGANIZATION], ids=KIND_IDS[1:])
def test_secret_key_permissions_are_stored_in_canonical_order(owner, project, kind):
    response = mint(
        user_client(owner), kind, project, permissions=["config:write", "analysis:create"]
    )

    assert response.json()["permissions"] == ["analysis:create", "config:write"]


@pytest.mark.parametrize("name", ["", "   ", "n" * 101, None, 5])
def test_mint_needs_a_name_of_1_to_100_characters(owner, project, name):
    response = mint(user_client(owner), KeyKind.SECRET, project, name=name)

    assert "name" in error_fields(response)


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("char", UNSHOWN_IN_NAMES.values(), ids=UNSHOWN_IN_NAMES.keys())
def test_mint_refuses_a_name_with_a_control_or_text_direction_character(owner, project, kind, char):
    response = mint(user_client(owner), kind, project, name=f"CI{char}prod")

    assert response.status_code == 400
    assert list(error_fields(response)) == ["name"]
    assert not ApiKey.objects.exists()
    assert not AuditEvent.objects.filter(action="key.minted").exists()


def test_mint_with_a_future_expiry_stores_it(owner, project):
    moment = (timezone.now() + timedelta(days=30)).replace(microsecond=0)

    response = mint(
        user_client(owner),
        KeyKind.SECRET,
        project,
        expiresAt=moment.isoformat().replace("+00:00", "Z"),
    )

    assert response.status_code == 201
    # always six fractional digits, a whole second too (a dates audit)
    assert response.json()["expiresAt"] == moment.strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    assert ApiKey.objects.get().expires_at == moment


def test_mint_accepts_an_expiry_in_another_time_zone(owner, project):
    response = mint(
        user_client(owner), KeyKind.SECRET, project, expiresAt="2099-01-01T02:00:00+02:00"
    )

    assert response.json()["expiresAt"] == "2099-01-01T00:00:00.000000Z"


@pytest.mark.parametrize(
    "expires_at",
    ["2099-01-01T00:00:00", "2099-01-01", "2001-01-01T00:00:00Z", "next week", 4102444800, True],
    ids=["naive", "date-only", "past", "words", "number", "bool"],
)
def test_mint_with_a_bad_expiry_is_a_validation_error(owner, project, expires_at):
    response = mint(user_client(owner), KeyKind.SECRET, project, expiresAt=expires_at)

    assert response.status_code == 400
    assert "expiresAt" in error_fields(response)
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize(
    ("expires_at", "message"),
    [
        (
            "2099-12-31T23:59:60Z",
            "A leap second (:60) is not a time here: give :59, or the next minute.",
        ),
        ("2099-02-30T12:00:00Z", "No such date or time: 2099-02-30T12:00:00Z."),
        ("2099-01-31T24:00:00+05:30", "No such date or time: 2099-01-31T24:00:00+05:30."),
    ],
    ids=["leap-second", "february-30", "hour-24"],
)
def test_an_expiry_written_as_a_time_that_does_not_exist_says_so(
    owner, project, expires_at, message
):
    """Not "send ISO 8601 with a time zone", which it was."""
    response = mint(user_client(owner), KeyKind.SECRET, project, expiresAt=expires_at)

    assert response.status_code == 400
    assert error_fields(response) == {"expiresAt": [message]}
    assert not ApiKey.objects.exists()


def test_an_expiry_far_in_the_future_is_kept_to_the_second(owner, project):
    response = mint(user_client(owner), KeyKind.SECRET, project, expiresAt="9999-12-31T23:59:59Z")

    assert response.status_code == 201
    assert response.json()["expiresAt"] == "9999-12-31T23:59:59.000000Z"


def test_mint_reports_every_bad_field_at_once_the_expiry_included(owner, project):
    response = mint(
        user_client(owner),
        KeyKind.SECRET,
        project,
        name="",
        permissions=[],
        expiresAt="next tuesday",
        allowedIps=["not-an-address"],
    )

    assert response.status_code == 400
    assert set(error_fields(response)) == {"name", "permissions", "expiresAt", "allowedIps"}
    assert not ApiKey.objects.exists()


def test_sdk_key_is_minted_with_normalised_allowed_origins(owner, project):
    response = mint(
        user_client(owner),
        KeyKind.PUBLIC,
        project,
        allowedOrigins=[
            "https://Shop.Example.com",
            "https://shop.example.com:443",
            "https://a.io:8443",
        ],
    )

    assert response.status_code == 201
    assert response.json()["allowedOrigins"] == ["https://shop.example.com", "https://a.io:8443"]


@pytest.mark.parametrize(
    "origins", [["http://shop.example.com"], ["https://x.io/path"], "https://x.io"]
)
def test_sdk_key_with_a_bad_origin_is_a_validation_error(owner, project, origins):
    response = mint(user_client(owner), KeyKind.PUBLIC, project, allowedOrigins=origins)

    assert "allowedOrigins" in error_fields(response)


@pytest.mark.parametrize("kind", [KeyKind.SECRET, KeyKind.ORGANIZATION], ids=KIND_IDS[1:])
def test_only_sdk_keys_take_allowed_origins(owner, project, kind):
    response = mint(user_client(owner), kind, project, allowedOrigins=["https://shop.example.com"])

    assert "allowedOrigins" in error_fields(response)


def test_the_collection_decides_the_kind_and_the_body_cannot_say_it(owner, project):
    response = mint(
        user_client(owner), KeyKind.PUBLIC, project, type="secret", scope="organization"
    )

    assert error_fields(response) == {"type": ["Unknown field."], "scope": ["Unknown field."]}
    assert mint(user_client(owner), KeyKind.PUBLIC, project).json()["key"].startswith("ss_pub_")


def test_minting_is_audited(admin, project):
    body = mint(user_client(admin), KeyKind.SECRET, project).json()

    event = AuditEvent.objects.get(action="key.minted")
    assert event.actor_user == admin
    assert event.target_id == body["id"]
    assert event.target_label == body["prefix"]


@pytest.mark.usefixtures("throttle_clock")
@override_settings(THROTTLE_RATES=settings.THROTTLE_RATES | {"mint_org": (2, 60)})
def test_minting_is_throttled_per_organization(owner, admin, project):
    mint(user_client(owner), KeyKind.SECRET, project)
    mint(user_client(owner), KeyKind.PUBLIC, project)

    response = mint(user_client(admin), KeyKind.ORGANIZATION, project)

    assert response.status_code == 429
    assert error_code(response) == "RATE_LIMITED"
    assert int(response["Retry-After"]) > 0
    assert ApiKey.objects.count() == 2


# List and read


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_list_holds_only_the_collections_keys_newest_first_revoked_included(
    viewer, project, other_project, kind
):
    older, _ = make_key(kind, project=project, name="older")
    make_key(kind, project=project, name="newer")
    older.revoked_at = timezone.now()
    older.save()
    for other_kind in KINDS:
        if other_kind is not KeyKind.ORGANIZATION:  # org keys of this org are all one collection
            make_key(other_kind, project=other_project, name="other project")
        if other_kind is not kind:
            make_key(other_kind, project=project, name="other kind")
    make_key(kind, project=ProjectFactory(), name="other tenant")

    response = user_client(viewer).get(collection_url(kind, project))

    assert response.status_code == 200
    results = response.json()["results"]
    assert [k["name"] for k in results] == ["newer", "older"]
    assert [k["status"] for k in results] == ["active", "revoked"]
    assert response.json()["next"] is None


def test_project_api_keys_include_the_projects_legacy_keys(member, project):
    legacy = legacy_key(project)

    results = user_client(member).get(collection_url(KeyKind.SECRET, project)).json()["results"]

    assert [(k["id"], k["legacy"], k["prefix"]) for k in results] == [
        (str(legacy.id), True, "tb_Legacy")
    ]
    assert results[0]["createdBy"] is None


def test_list_shows_expired_keys_as_expired(member, project):
    api_key, _ = make_key(KeyKind.SECRET, project=project)
    ApiKey.objects.filter(pk=api_key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    results = user_client(member).get(collection_url(KeyKind.SECRET, project)).json()["results"]

    assert results[0]["status"] == "expired"


def test_list_is_paginated_with_a_cursor(member, project):
    for name in ("a", "b", "c"):
        make_key(KeyKind.PUBLIC, project=project, name=name)
    client = user_client(member)

    first = client.get(collection_url(KeyKind.PUBLIC, project), {"limit": 2}).json()
    second = client.get(first["next"]).json()

    assert [k["name"] for k in first["results"] + second["results"]] == ["c", "b", "a"]
    assert second["next"] is None


def test_a_used_org_key_shows_when_and_where_it_was_last_used(member, project):
    api_key, plaintext = make_key(KeyKind.ORGANIZATION, project=project)
    assert (
        bearer_client(plaintext).get("/v1/config", HTTP_X_PROJECT_ID=str(project.id)).status_code
        == 200
    )

    body = user_client(member).get(key_url(KeyKind.ORGANIZATION, project, api_key)).json()

    assert body["lastUsedAt"] is not None
    assert body["lastUsedProjectId"] == str(project.id)


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_any_member_reads_one_key(viewer, project, kind):
    api_key, _ = make_key(kind, project=project, name="One")

    response = user_client(viewer).get(key_url(kind, project, api_key))

    assert response.status_code == 200
    assert response.json()["id"] == str(api_key.id)
    assert response.json()["name"] == "One"


# Revoke


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_revoke_is_immediate_and_audited(admin, project, kind):
    api_key, plaintext = make_key(kind, project=project)
    headers = {"HTTP_X_PROJECT_ID": str(project.id)}
    assert bearer_client(plaintext).get("/v1/me", **headers).status_code == 200

    response = user_client(admin).post(key_url(kind, project, api_key, "revoke"))

    assert response.status_code == 200
    assert response.json()["status"] == "revoked"
    assert response.json()["revokedAt"] is not None
    rejected = bearer_client(plaintext).get("/v1/me", **headers)
    assert rejected.status_code == 401
    assert error_code(rejected) == "KEY_REVOKED"
    event = AuditEvent.objects.get(action="key.revoked")
    assert (event.actor_user, event.target_id) == (admin, str(api_key.id))


def test_revoke_is_idempotent(owner, project):
    api_key, _ = make_key(KeyKind.SECRET, project=project)
    client = user_client(owner)

    first = client.post(key_url(KeyKind.SECRET, project, api_key, "revoke"))
    second = client.post(key_url(KeyKind.SECRET, project, api_key, "revoke"))

    assert first.status_code == second.status_code == 200
    assert first.json()["revokedAt"] == second.json()["revokedAt"]
    assert AuditEvent.objects.filter(action="key.revoked").count() == 1


def test_a_legacy_key_is_revoked_from_project_api_keys(owner, project):
    legacy = legacy_key(project)

    response = user_client(owner).post(key_url(KeyKind.SECRET, project, legacy, "revoke"))

    assert response.status_code == 200
    assert bearer_client(LEGACY_KEY).get("/v1/me").status_code == 401


# Allowed origins (SDK keys)


def test_sdk_key_origins_are_editable(admin, project):
    api_key, _ = make_key(KeyKind.PUBLIC, project=project)
    client = user_client(admin)
    url = key_url(KeyKind.PUBLIC, project, api_key)

    response = client.patch(url, {"allowedOrigins": ["https://Shop.example.com"]}, format="json")

    assert response.status_code == 200
    assert response.json()["allowedOrigins"] == ["https://shop.example.com"]
    assert AuditEvent.objects.get(action="key.updated").details["fields"] == ["allowedOrigins"]
    cleared = client.patch(url, {"allowedOrigins": []}, format="json")
    assert cleared.json()["allowedOrigins"] == []


def test_sdk_key_edit_needs_a_field(admin, project):
    api_key, _ = make_key(KeyKind.PUBLIC, project=project)

    response = user_client(admin).patch(
        key_url(KeyKind.PUBLIC, project, api_key), {}, format="json"
    )

    assert "body" in error_fields(response)


def test_sdk_key_origins_edit_rejects_bad_origins(admin, project):
    api_key, _ = make_key(KeyKind.PUBLIC, project=project)

    response = user_client(admin).patch(
        key_url(KeyKind.PUBLIC, project, api_key), {"allowedOrigins": ["ftp://x"]}, format="json"
    )

    assert "allowedOrigins" in error_fields(response)
    api_key.refresh_from_db()
    assert api_key.allowed_origins == []


@pytest.mark.parametrize("kind", [KeyKind.SECRET, KeyKind.ORGANIZATION], ids=KIND_IDS[1:])
def test_secret_keys_cannot_be_bound_to_origins(owner, project, kind):
    api_key, _ = make_key(kind, project=project)

    response = user_client(owner).patch(
        key_url(kind, project, api_key), {"allowedOrigins": ["https://a.io"]}, format="json"
    )

    assert "allowedOrigins" in error_fields(response)
    api_key.refresh_from_db()
    assert api_key.allowed_origins == []


# Keys of other collections and unreachable collections


def key_elsewhere(where: str, project, other_project, outsider):
    """A key that is not in the project-api-keys collection of `project`."""
    if where == "sdk-key-same-project":
        return make_key(KeyKind.PUBLIC, project=project)[0]
    if where == "org-key-same-org":
        return make_key(KeyKind.ORGANIZATION, project=project)[0]
    if where == "other-project":
        return make_key(KeyKind.SECRET, project=other_project)[0]
    outsider_project = outsider.memberships.get().organization.projects.get()
    return make_key(KeyKind.SECRET, project=outsider_project)[0]


@pytest.mark.parametrize(
    "where", ["sdk-key-same-project", "org-key-same-org", "other-project", "other-tenant"]
)
@pytest.mark.parametrize("action", ["", "revoke", "roll"])
def test_a_key_of_another_collection_is_not_found(
    owner, project, other_project, outsider, where, action
):
    api_key = key_elsewhere(where, project, other_project, outsider)

    response = send(
        user_client(owner),
        "get" if not action else "post",
        key_url(KeyKind.SECRET, project, api_key, action),
        {"graceSeconds": 0} if action == "roll" else None,
    )

    assert response.status_code == 404
    assert error_code(response) == "NOT_FOUND"
    api_key.refresh_from_db()
    assert api_key.revoked_at is None
    assert api_key.expires_at is None


def test_a_project_key_is_not_in_the_organization_collection(owner, project):
    api_key, _ = make_key(KeyKind.SECRET, project=project)

    response = user_client(owner).post(key_url(KeyKind.ORGANIZATION, project, api_key, "revoke"))

    assert response.status_code == 404
    assert error_code(response) == "NOT_FOUND"


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("key_id", ["not-a-uuid", pytest.param(str(uuid.uuid4()), id="unknown")])
def test_an_unknown_key_id_is_not_found(owner, project, kind, key_id):
    response = user_client(owner).get(key_url(kind, project, key_id))

    assert response.status_code == 404
    assert error_code(response) == "NOT_FOUND"


@pytest.mark.parametrize("suffix", ["sdk-keys", "api-keys"])
@pytest.mark.parametrize(
    "project_id", ["not-a-uuid", pytest.param(str(uuid.uuid4()), id="unknown")]
)
def test_an_unknown_project_is_project_not_found(owner, suffix, project_id):
    response = user_client(owner).get(f"/v1/projects/{project_id}/{suffix}")

    assert response.status_code == 404
    assert error_code(response) == "PROJECT_NOT_FOUND"


# Who may do what: every endpoint, every role


def key_request(kind: KeyKind, action: str, project, api_key):
    """(method, path, body, success status, manager-only) of one key-management request."""
    return {
        "list": ("get", collection_url(kind, project), None, 200, False),
        "read": ("get", key_url(kind, project, api_key), None, 200, False),
        "mint": ("post", collection_url(kind, project), mint_body(kind), 201, True),
        "revoke": ("post", key_url(kind, project, api_key, "revoke"), None, 200, True),
        "roll": ("post", key_url(kind, project, api_key, "roll"), {"graceSeconds": 60}, 201, True),
        "edit-origins": (
            "patch",
            key_url(kind, project, api_key),
            {"allowedOrigins": ["https://a.io"]},
            200,
            True,
        ),
    }[action]


#: Every key-management endpoint: each collection's five, plus the SDK keys' origin edit.
KEY_ENDPOINTS = [
    pytest.param(kind, action, id=f"{kind_id}-{action}")
    for kind, kind_id in zip(KINDS, KIND_IDS, strict=True)
    for action in ("list", "read", "mint", "revoke", "roll")
] + [pytest.param(KeyKind.PUBLIC, "edit-origins", id="sdk-keys-edit-origins")]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("kind, action", KEY_ENDPOINTS)
def test_role_matrix(
    request, organization, project, owner, admin, member, viewer, outsider, role, kind, action
):
    api_key, _ = make_key(kind, project=project)
    method, path, body, success, manager_only = key_request(kind, action, project, api_key)
    caller = request.getfixturevalue(role)

    response = send(user_client(caller), method, path, body)

    if role == "outsider":
        assert response.status_code == 404
        expected = "NOT_FOUND" if kind is KeyKind.ORGANIZATION else "PROJECT_NOT_FOUND"
        assert error_code(response) == expected
    elif manager_only and role not in MANAGERS:
        assert response.status_code == 403
        assert error_code(response) == "PERMISSION_DENIED"
    else:
        assert response.status_code == success, response.content
    if role not in MANAGERS:
        api_key.refresh_from_db()
        assert (api_key.revoked_at, api_key.expires_at, api_key.allowed_origins) == (None, None, [])
        assert ApiKey.objects.count() == 1


@pytest.mark.parametrize("credential_kind", KINDS, ids=["pub", "secret", "org"])
@pytest.mark.parametrize("kind, action", KEY_ENDPOINTS)
def test_api_keys_can_never_manage_keys(project, kind, action, credential_kind):
    api_key, _ = make_key(kind, project=project)
    _own, credential = make_key(credential_kind, project=project)
    method, path, body, _success, _manager_only = key_request(kind, action, project, api_key)

    response = send(
        bearer_client(credential), method, path, body, HTTP_X_PROJECT_ID=str(project.id)
    )

    assert response.status_code == 403
    assert error_code(response) == "KEY_MANAGEMENT_FORBIDDEN"
    api_key.refresh_from_db()
    assert (api_key.revoked_at, api_key.expires_at, api_key.allowed_origins) == (None, None, [])
    assert ApiKey.objects.count() == 2


def test_a_key_cannot_revoke_itself(project):
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)

    response = bearer_client(plaintext).post(key_url(KeyKind.SECRET, project, api_key, "revoke"))

    assert error_code(response) == "KEY_MANAGEMENT_FORBIDDEN"


def test_key_management_needs_a_credential(api_client, project):
    response = api_client.get(collection_url(KeyKind.SECRET, project))

    assert response.status_code == 401
    assert error_code(response) == "AUTHENTICATION_REQUIRED"


# CSRF for the cookie session


def test_minting_with_the_cookie_session_needs_the_csrf_token(owner, project):
    client = cookie_client(owner)

    refused = mint(client, KeyKind.SECRET, project)

    assert refused.status_code == 403
    assert not ApiKey.objects.exists()

    accepted = client.post(
        collection_url(KeyKind.SECRET, project),
        mint_body(KeyKind.SECRET),
        format="json",
        **with_csrf(client),
    )

    assert accepted.status_code == 201


def test_minting_with_a_bearer_token_needs_no_csrf_token(owner, project):
    response = mint(user_client(owner, enforce_csrf_checks=True), KeyKind.SECRET, project)

    assert response.status_code == 201
