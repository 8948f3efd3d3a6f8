"""Guardrails, the management side (SPEC §4.10): mint, roll, PATCH <collection>/{keyId}."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from apps.apikeys.services import revoke_key
from apps.audit.models import AuditEvent
from tests.factories import ProjectFactory, make_key
from tests.orgs.helpers import (
    MANAGERS,
    ROLES,
    UNSHOWN_IN_NAMES,
    bearer_client,
    collection_url,
    error_code,
    error_fields,
    key_url,
    send,
    user_client,
)

pytestmark = pytest.mark.django_db

KINDS = list(KeyKind)
KIND_IDS = ["sdk-keys", "project-api-keys", "org-api-keys"]
SECRET_KINDS = [KeyKind.SECRET, KeyKind.ORGANIZATION]
SECRET_IDS = KIND_IDS[1:]


def mint(client, kind, project, **fields):
    body = {"name": "Deploys"}
    if kind is not KeyKind.PUBLIC:
        body["permissions"] = ["analysis:read"]
    return client.post(collection_url(kind, project), body | fields, format="json")


def patch(client, kind, project, api_key, body):
    return client.patch(key_url(kind, project, api_key), body, format="json")


# Mint: rateLimit


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_a_rate_limit_is_set_at_mint_on_any_key(owner, project, kind):
    response = mint(user_client(owner), kind, project, rateLimit={"requests": 5, "perSeconds": 60})

    assert response.status_code == 201
    assert response.json()["rateLimit"] == {"requests": 5, "perSeconds": 60}
    api_key = ApiKey.objects.get()
    assert (api_key.rate_limit_requests, api_key.rate_limit_seconds) == (5, 60)
    event = AuditEvent.objects.get(action="key.minted")
    assert event.details["rateLimit"] == {"requests": 5, "perSeconds": 60}


@pytest.mark.parametrize(
    "limit", [{"requests": 1, "perSeconds": 1}, {"requests": 100_000, "perSeconds": 86_400}]
)
def test_the_rate_limit_bounds_are_inclusive(owner, project, limit):
    response = mint(user_client(owner), KeyKind.SECRET, project, rateLimit=limit)

    assert response.status_code == 201
    assert response.json()["rateLimit"] == limit


def test_a_null_rate_limit_means_none(owner, project):
    response = mint(user_client(owner), KeyKind.SECRET, project, rateLimit=None)

    assert response.status_code == 201
    assert response.json()["rateLimit"] is None


@pytest.mark.parametrize(
    "limit",
    [
        {"requests": 0, "perSeconds": 60},
        {"requests": 100_001, "perSeconds": 60},
        {"requests": 5, "perSeconds": 0},
        {"requests": 5, "perSeconds": 86_401},
        {"requests": True, "perSeconds": 60},
        {"requests": "5", "perSeconds": 60},
        {"requests": 5.5, "perSeconds": 60},
        {"requests": 5},
        {"requests": 5, "perSeconds": 60, "burst": 10},
        [5, 60],
        "5/60",
        5,
    ],
)
def test_a_bad_rate_limit_is_a_validation_error(owner, project, limit):
    response = mint(user_client(owner), KeyKind.SECRET, project, rateLimit=limit)

    assert response.status_code == 400
    assert list(error_fields(response)) == ["rateLimit"]
    assert not ApiKey.objects.exists()


# Mint: allowedIps


@pytest.mark.parametrize("kind", SECRET_KINDS, ids=SECRET_IDS)
def test_allowed_ips_are_normalized_on_save(owner, project, kind):
    sent = [
        "203.0.113.7",
        "198.51.100.99/24",
        "2001:DB8::1/32",
        "::1",
        " 192.0.2.0/28 ",
        "203.0.113.7/32",  # the same as the first once normalized
        "::ffff:192.0.2.128/121",  # an IPv4-mapped range is stored as IPv4
    ]

    response = mint(user_client(owner), kind, project, allowedIps=sent)

    assert response.status_code == 201, response.json()
    expected = [
        "203.0.113.7/32",
        "198.51.100.0/24",
        "2001:db8::/32",
        "::1/128",
        "192.0.2.0/28",
        "192.0.2.128/25",
    ]
    assert response.json()["allowedIps"] == expected
    assert ApiKey.objects.get().allowed_ips == expected


def test_fifty_allowed_ips_are_accepted_and_fifty_one_are_not(owner, project):
    ips = [f"10.0.{i}.0/24" for i in range(51)]
    client = user_client(owner)

    assert mint(client, KeyKind.SECRET, project, allowedIps=ips[:50]).status_code == 201
    refused = mint(client, KeyKind.SECRET, project, allowedIps=ips)

    assert "at most 50" in error_fields(refused)["allowedIps"][0].lower()
    assert ApiKey.objects.count() == 1


@pytest.mark.parametrize(
    "entry", ["garbage", "10.0.0.300", "10.0.0.0/33", "2001:db8::/129", "fe80::1%eth0", "", 10]
)
@pytest.mark.parametrize("kind", SECRET_KINDS, ids=SECRET_IDS)
def test_garbage_cidrs_are_a_validation_error(owner, project, kind, entry):
    response = mint(user_client(owner), kind, project, allowedIps=["10.0.0.0/8", entry])

    assert response.status_code == 400
    assert error_fields(response) == {"allowedIps": [f"Not a CIDR or IP address: {entry}"]}
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize("value", ["10.0.0.0/8", {"ip": "10.0.0.1"}])
def test_allowed_ips_must_be_a_list(owner, project, value):
    response = mint(user_client(owner), KeyKind.SECRET, project, allowedIps=value)

    assert "allowedIps" in error_fields(response)


def test_an_sdk_key_with_allowed_ips_is_a_validation_error(owner, project):
    response = mint(user_client(owner), KeyKind.PUBLIC, project, allowedIps=["203.0.113.0/24"])

    assert response.status_code == 400
    assert "allowedOrigins" in error_fields(response)["allowedIps"][0]
    assert not ApiKey.objects.exists()


def test_an_sdk_key_may_send_an_empty_ip_list(owner, project):
    response = mint(user_client(owner), KeyKind.PUBLIC, project, allowedIps=[])

    assert response.status_code == 201
    assert response.json()["allowedIps"] == []


# Mint: projectIds


def test_an_org_key_is_confined_to_projects_of_its_organization(owner, project, other_project):
    sent = [str(other_project.id).upper(), str(project.id), str(other_project.id)]

    response = mint(user_client(owner), KeyKind.ORGANIZATION, project, projectIds=sent)

    assert response.status_code == 201
    assert response.json()["projectIds"] == [str(other_project.id), str(project.id)]
    assert ApiKey.objects.get().project_ids == [str(other_project.id), str(project.id)]


def test_a_project_of_another_organization_is_a_validation_error(owner, project, outsider):
    foreign = outsider.memberships.get().organization.projects.get()

    response = mint(
        user_client(owner),
        KeyKind.ORGANIZATION,
        project,
        projectIds=[str(project.id), str(foreign.id)],
    )

    assert error_fields(response) == {
        "projectIds": [f"No project {foreign.id} in this organization."]
    }
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize("value", [["not-a-uuid"], [42], "all", [None]])
def test_malformed_project_ids_are_a_validation_error(owner, project, value):
    response = mint(user_client(owner), KeyKind.ORGANIZATION, project, projectIds=value)

    assert "projectIds" in error_fields(response)


@pytest.mark.parametrize("kind", [KeyKind.PUBLIC, KeyKind.SECRET], ids=KIND_IDS[:2])
def test_project_keys_cannot_be_given_projects(owner, project, kind):
    response = mint(user_client(owner), kind, project, projectIds=[str(project.id)])

    assert error_fields(response) == {
        "projectIds": ["Only organization keys can be confined to projects."]
    }


def test_every_bad_field_is_reported_at_once(owner, project):
    response = mint(
        user_client(owner),
        KeyKind.ORGANIZATION,
        project,
        name="",
        rateLimit={"requests": 0, "perSeconds": 1},
        allowedIps=["nope"],
        projectIds=["nope"],
    )

    assert set(error_fields(response)) == {"name", "rateLimit", "allowedIps", "projectIds"}


# Roll keeps the guardrails


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_roll_keeps_the_old_keys_guardrails(owner, project, other_project, kind):
    guardrails = {"rate_limit": {"requests": 7, "perSeconds": 30}}
    if kind is not KeyKind.PUBLIC:
        guardrails["allowed_ips"] = ["203.0.113.0/24"]
    if kind is KeyKind.ORGANIZATION:
        guardrails["project_ids"] = [str(other_project.id)]
    old, _ = make_key(kind, project=project, **guardrails)

    response = user_client(owner).post(
        key_url(kind, project, old, "roll"), {"graceSeconds": 60}, format="json"
    )

    assert response.status_code == 201
    body = response.json()
    assert body["rateLimit"] == {"requests": 7, "perSeconds": 30}
    assert body["allowedIps"] == guardrails.get("allowed_ips", [])
    if kind is KeyKind.ORGANIZATION:
        assert body["projectIds"] == [str(other_project.id)]


def test_roll_takes_the_new_keys_expiry(owner, project):
    old, _ = make_key(
        KeyKind.SECRET, project=project, expires_at=timezone.now() + timedelta(days=9)
    )
    client = user_client(owner)

    later = client.post(
        key_url(KeyKind.SECRET, project, old, "roll"),
        {"graceSeconds": 60, "expiresAt": "2030-01-31T12:00:00Z"},
        format="json",
    )
    never = client.post(
        key_url(KeyKind.SECRET, project, later.json()["id"], "roll"),
        {"graceSeconds": 60, "expiresAt": None},
        format="json",
    )

    assert later.json()["expiresAt"] == "2030-01-31T12:00:00.000000Z"
    assert never.status_code == 201
    assert never.json()["expiresAt"] is None


# PATCH <collection>/{keyId}


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_patch_changes_the_name_and_rate_limit_of_any_key(admin, project, kind):
    api_key, _ = make_key(kind, project=project)

    response = patch(
        user_client(admin),
        kind,
        project,
        api_key,
        {"name": "  Renamed ", "rateLimit": {"requests": 10, "perSeconds": 1}},
    )

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    assert response.json()["name"] == "Renamed"
    assert response.json()["rateLimit"] == {"requests": 10, "perSeconds": 1}
    api_key.refresh_from_db()
    assert (api_key.name, api_key.rate_limit_requests, api_key.rate_limit_seconds) == (
        "Renamed",
        10,
        1,
    )


def test_patch_lifts_a_rate_limit_with_null(owner, project):
    api_key, _ = make_key(
        KeyKind.SECRET, project=project, rate_limit={"requests": 5, "perSeconds": 60}
    )

    response = patch(user_client(owner), KeyKind.SECRET, project, api_key, {"rateLimit": None})

    assert response.json()["rateLimit"] is None
    api_key.refresh_from_db()
    assert api_key.rate_limit_requests is api_key.rate_limit_seconds is None


def test_fields_not_sent_keep_their_values(owner, project, other_project):
    api_key, _ = make_key(
        KeyKind.ORGANIZATION,
        project=project,
        rate_limit={"requests": 5, "perSeconds": 60},
        allowed_ips=["10.0.0.0/8"],
        project_ids=[str(project.id)],
    )

    response = patch(
        user_client(owner), KeyKind.ORGANIZATION, project, api_key, {"allowedIps": ["::1"]}
    )

    body = response.json()
    assert body["allowedIps"] == ["::1/128"]
    assert body["rateLimit"] == {"requests": 5, "perSeconds": 60}
    assert body["projectIds"] == [str(project.id)]
    assert body["name"] == "test key"


def test_patch_widens_and_narrows_an_org_keys_projects(owner, project, other_project):
    api_key, _ = make_key(KeyKind.ORGANIZATION, project=project, project_ids=[str(project.id)])
    client = user_client(owner)

    widened = patch(client, KeyKind.ORGANIZATION, project, api_key, {"projectIds": []})
    moved = patch(
        client, KeyKind.ORGANIZATION, project, api_key, {"projectIds": [str(other_project.id)]}
    )

    assert widened.json()["projectIds"] == []
    assert moved.json()["projectIds"] == [str(other_project.id)]


@pytest.mark.parametrize(
    ("kind", "field", "stored"),
    [
        (KeyKind.SECRET, "allowedIps", ["10.0.0.1/32", "10.0.0.2/32"]),
        (KeyKind.PUBLIC, "allowedOrigins", ["https://a.example.com", "https://b.example.com"]),
        (KeyKind.ORGANIZATION, "projectIds", None),  # the two projects', below
    ],
)
def test_a_list_sent_in_another_order_is_no_change(
    owner, project, other_project, kind, field, stored
):
    """Found by an audit-log audit: the Edit limits dialog, saved unchanged, posts an org
    key's projects in name order; another order than the stored one recorded `key.updated`
    (and sent its webhook) with the same ids before and after."""
    stored = stored or sorted([str(project.id), str(other_project.id)])
    column = {"allowedIps": "allowed_ips", "allowedOrigins": "allowed_origins"}
    api_key, _ = make_key(kind, project=project, **{column.get(field, "project_ids"): stored})

    response = patch(user_client(owner), kind, project, api_key, {field: stored[::-1]})

    assert response.status_code == 200
    assert response.json()[field] == stored
    assert not AuditEvent.objects.filter(action="key.updated").exists()


def test_patch_changes_an_sdk_keys_origins(owner, project):
    api_key, _ = make_key(KeyKind.PUBLIC, project=project)

    response = patch(
        user_client(owner),
        KeyKind.PUBLIC,
        project,
        api_key,
        {"allowedOrigins": ["https://Shop.example.com:443"]},
    )

    assert response.json()["allowedOrigins"] == ["https://shop.example.com"]


@pytest.mark.parametrize(
    "kind, body, field",
    [
        (KeyKind.PUBLIC, {"allowedIps": ["10.0.0.0/8"]}, "allowedIps"),
        (KeyKind.SECRET, {"allowedOrigins": ["https://a.example"]}, "allowedOrigins"),
        (KeyKind.SECRET, {"projectIds": ["00000000-0000-0000-0000-000000000000"]}, "projectIds"),
        (KeyKind.SECRET, {"allowedIps": ["10.0.0.0/8", "nope"]}, "allowedIps"),
        (KeyKind.SECRET, {"rateLimit": {"requests": 0, "perSeconds": 60}}, "rateLimit"),
        (KeyKind.SECRET, {"name": ""}, "name"),
        (KeyKind.SECRET, {"name": "x" * 101}, "name"),
        (
            KeyKind.ORGANIZATION,
            {"projectIds": ["00000000-0000-0000-0000-000000000000"]},
            "projectIds",
        ),
    ],
)
def test_patch_validates_like_mint_and_changes_nothing_on_error(owner, project, kind, body, field):
    api_key, _ = make_key(kind, project=project, rate_limit={"requests": 5, "perSeconds": 60})
    before = ApiKey.objects.filter(pk=api_key.pk).values().get()

    response = patch(user_client(owner), kind, project, api_key, body)

    assert response.status_code == 400
    assert list(error_fields(response)) == [field]
    assert ApiKey.objects.filter(pk=api_key.pk).values().get() == before
    assert not AuditEvent.objects.filter(action="key.updated").exists()


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("char", UNSHOWN_IN_NAMES.values(), ids=UNSHOWN_IN_NAMES.keys())
def test_patch_refuses_a_name_with_a_control_or_text_direction_character(
    owner, project, kind, char
):
    api_key, _ = make_key(kind, project=project)
    before = ApiKey.objects.filter(pk=api_key.pk).values().get()

    response = patch(user_client(owner), kind, project, api_key, {"name": f"CI{char}prod"})

    assert response.status_code == 400
    assert list(error_fields(response)) == ["name"]
    assert ApiKey.objects.filter(pk=api_key.pk).values().get() == before
    assert not AuditEvent.objects.filter(action="key.updated").exists()


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_a_name_holding_a_key_is_refused_at_mint_and_patch(owner, project, kind):
    """Found by an audit-log audit: a key pasted into a name was stored in every audit event
    of the key for good, and sent in its webhooks and emails."""
    _other, pasted = make_key(KeyKind.SECRET, project=project)
    client = user_client(owner)
    before = ApiKey.objects.count()

    minted = mint(client, kind, project, name=f"CI {pasted}")
    api_key, _ = make_key(kind, project=project, name="CI")
    patched = patch(client, kind, project, api_key, {"name": f"prod:{pasted}"})
    # Behind another key's prefix and a key-long run (found by a fuzzing audit: accepted).
    glued = patch(client, kind, project, api_key, {"name": f"ss_org_{'A' * 36}{pasted}"})

    for response in (minted, patched, glued):
        assert response.status_code == 400 and list(error_fields(response)) == ["name"]
        assert pasted not in response.content.decode()
    assert ApiKey.objects.count() == before + 1
    assert ApiKey.objects.get(pk=api_key.pk).name == "CI"
    assert not AuditEvent.objects.filter(action="key.updated").exists()
    # What only looks like one stays a name: a prefix, or the shape with a wrong checksum.
    almost = pasted[:-1] + ("A" if pasted[-1] != "A" else "B")
    for name in ("Rotates ss_secret_ keys", f"old {almost}"):
        assert patch(client, kind, project, api_key, {"name": name}).status_code == 200


def test_patch_of_a_foreign_project_is_a_validation_error(owner, project, outsider):
    api_key, _ = make_key(KeyKind.ORGANIZATION, project=project)
    foreign = outsider.memberships.get().organization.projects.get()

    response = patch(
        user_client(owner),
        KeyKind.ORGANIZATION,
        project,
        api_key,
        {"projectIds": [str(foreign.id)]},
    )

    assert list(error_fields(response)) == ["projectIds"]


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_permissions_never_change(owner, project, kind):
    api_key, _ = make_key(kind, project=project)
    before = list(api_key.permissions)

    response = patch(
        user_client(owner), kind, project, api_key, {"name": "x", "permissions": ["config:write"]}
    )

    assert list(error_fields(response)) == ["permissions"]
    api_key.refresh_from_db()
    assert (api_key.permissions, api_key.name) == (before, "test key")


@pytest.mark.parametrize(
    "body, fields",
    [
        ({"nickname": "x"}, ["nickname"]),
        ({"name": "x", "expiresAt": None}, ["expiresAt"]),
        ({}, ["body"]),
    ],
)
def test_unknown_fields_and_empty_bodies_are_validation_errors(owner, project, body, fields):
    api_key, _ = make_key(KeyKind.SECRET, project=project)

    response = patch(user_client(owner), KeyKind.SECRET, project, api_key, body)

    assert list(error_fields(response)) == fields


@pytest.mark.parametrize("body", [["name"], "name", 5])
def test_a_body_that_is_not_an_object_is_a_validation_error(owner, project, body):
    api_key, _ = make_key(KeyKind.SECRET, project=project)

    response = patch(user_client(owner), KeyKind.SECRET, project, api_key, body)

    assert response.status_code == 400
    assert error_code(response) == "VALIDATION_ERROR"


def test_a_revoked_or_expired_key_cannot_be_changed(owner, project):
    revoked, _ = make_key(KeyKind.SECRET, project=project)
    revoke_key(actor=owner, api_key=revoked)
    expired, _ = make_key(KeyKind.SECRET, project=project)
    ApiKey.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    client = user_client(owner)

    for api_key in (revoked, expired):
        response = patch(client, KeyKind.SECRET, project, api_key, {"name": "Back to life"})

        assert response.status_code == 400
        assert error_fields(response) == {"keyId": ["Only an active key can be changed."]}
        api_key.refresh_from_db()
        assert api_key.name == "test key"


def test_a_change_is_audited_with_the_fields_and_their_values(owner, project, other_project):
    api_key, _ = make_key(
        KeyKind.ORGANIZATION,
        project=project,
        rate_limit={"requests": 5, "perSeconds": 60},
        project_ids=[str(project.id)],
    )

    response = user_client(owner).patch(
        key_url(KeyKind.ORGANIZATION, project, api_key),
        {
            "rateLimit": None,
            "allowedIps": ["10.0.0.1"],
            "projectIds": [str(project.id), str(other_project.id)],
            "name": "test key",  # unchanged: not an audited change
        },
        format="json",
    )

    assert response.status_code == 200
    event = AuditEvent.objects.get(action="key.updated")
    assert event.actor_user == owner
    assert (event.target_type, event.target_id, event.target_label) == (
        "key",
        str(api_key.id),
        api_key.prefix,
    )
    assert event.organization_id == project.organization_id
    assert event.details == {
        "fields": ["rateLimit", "allowedIps", "projectIds"],
        "before": {
            "rateLimit": {"requests": 5, "perSeconds": 60},
            "allowedIps": [],
            "projectIds": [str(project.id)],
        },
        "after": {
            "rateLimit": None,
            "allowedIps": ["10.0.0.1/32"],
            "projectIds": [str(project.id), str(other_project.id)],
        },
    }
    listed = user_client(owner).get(
        f"/v1/organizations/{project.organization_id}/audit-events?action=key.updated"
    )
    assert [e["action"] for e in listed.json()["results"]] == ["key.updated"]
    assert listed.json()["results"][0]["details"] == event.details  # the API names the fields


def test_a_change_to_the_same_values_records_nothing(owner, project):
    api_key, _ = make_key(KeyKind.SECRET, project=project, allowed_ips=["10.0.0.0/8"])

    response = patch(
        user_client(owner), KeyKind.SECRET, project, api_key, {"allowedIps": ["10.1.2.3/8"]}
    )

    assert response.status_code == 200
    assert not AuditEvent.objects.filter(action="key.updated").exists()


# Who may PATCH


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_patch_role_matrix(request, project, owner, admin, member, viewer, outsider, role, kind):
    api_key, _ = make_key(kind, project=project)
    caller = request.getfixturevalue(role)

    response = patch(
        user_client(caller), kind, project, api_key, {"rateLimit": {"requests": 1, "perSeconds": 1}}
    )

    if role == "outsider":
        assert response.status_code == 404
        expected = "NOT_FOUND" if kind is KeyKind.ORGANIZATION else "PROJECT_NOT_FOUND"
        assert error_code(response) == expected
    elif role not in MANAGERS:
        assert response.status_code == 403
        assert error_code(response) == "PERMISSION_DENIED"
    else:
        assert response.status_code == 200
    api_key.refresh_from_db()
    assert (api_key.rate_limit_requests is not None) == (role in MANAGERS)


@pytest.mark.parametrize("credential_kind", KINDS, ids=["pub", "secret", "org"])
@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_api_keys_cannot_patch_keys_not_even_themselves(project, kind, credential_kind):
    api_key, _ = make_key(kind, project=project, rate_limit={"requests": 5, "perSeconds": 60})
    _own, credential = make_key(credential_kind, project=project)

    response = send(
        bearer_client(credential),
        "patch",
        key_url(kind, project, api_key),
        {"rateLimit": None},
        HTTP_X_PROJECT_ID=str(project.id),
    )
    itself = patch(bearer_client(credential), credential_kind, project, _own, {"rateLimit": None})

    assert error_code(response) == error_code(itself) == "KEY_MANAGEMENT_FORBIDDEN"
    api_key.refresh_from_db()
    assert api_key.rate_limit_requests == 5


@pytest.mark.parametrize("where", ["other-collection", "other-project", "other-tenant"])
def test_a_key_outside_the_collection_is_not_found(owner, project, outsider, where):
    if where == "other-collection":
        api_key, _ = make_key(KeyKind.PUBLIC, project=project)
    elif where == "other-project":
        api_key, _ = make_key(
            KeyKind.SECRET, project=ProjectFactory(organization=project.organization)
        )
    else:
        foreign = outsider.memberships.get().organization.projects.get()
        api_key, _ = make_key(KeyKind.SECRET, project=foreign)

    response = patch(user_client(owner), KeyKind.SECRET, project, api_key, {"name": "mine now"})

    assert response.status_code == 404
    assert error_code(response) == "NOT_FOUND"
    api_key.refresh_from_db()
    assert api_key.name == "test key"
