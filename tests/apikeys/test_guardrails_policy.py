"""The organization key lifetime policy (SPEC §4.10): `keyMaxLifetimeDays`."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.apikeys import guardrails
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from apps.apikeys.services import replace_legacy_key
from apps.audit.models import AuditEvent
from core.times import iso
from tests.factories import make_key, make_legacy_key
from tests.orgs.helpers import (
    ROLES,
    bearer_client,
    collection_url,
    error_code,
    error_fields,
    key_url,
    user_client,
)

pytestmark = pytest.mark.django_db

SECRET_KINDS = [KeyKind.SECRET, KeyKind.ORGANIZATION]
SECRET_IDS = ["project-api-keys", "org-api-keys"]


def org_url(organization) -> str:
    return f"/v1/organizations/{organization.id}"


def set_policy(client, organization, days):
    return client.patch(org_url(organization), {"keyMaxLifetimeDays": days}, format="json")


def mint(client, kind, project, expires_at="omit"):
    body = {"name": "Deploys"}
    if kind is not KeyKind.PUBLIC:
        body["permissions"] = ["analysis:read"]
    if expires_at != "omit":
        body["expiresAt"] = expires_at if expires_at is None else iso(expires_at)
    return client.post(collection_url(kind, project), body, format="json")


# Setting the policy


def test_the_owner_sets_and_lifts_the_policy(owner, organization):
    client = user_client(owner)

    response = set_policy(client, organization, 30)

    assert response.status_code == 200
    assert response.json() == {
        "id": str(organization.id),
        "name": "Acme",
        "role": "owner",
        "keyMaxLifetimeDays": 30,
    }
    organization.refresh_from_db()
    assert organization.key_max_lifetime_days == 30
    listed = client.get("/v1/organizations").json()["results"]
    assert listed[0]["keyMaxLifetimeDays"] == 30

    lifted = set_policy(client, organization, None)

    assert lifted.json()["keyMaxLifetimeDays"] is None
    organization.refresh_from_db()
    assert organization.key_max_lifetime_days is None


def test_setting_the_policy_is_audited(owner, organization):
    set_policy(user_client(owner), organization, 90)
    set_policy(user_client(owner), organization, 90)  # unchanged: nothing recorded

    event = AuditEvent.objects.get(action="organization.updated")
    assert event.actor_user == owner
    assert event.details == {
        "fields": ["keyMaxLifetimeDays"],
        "before": {"keyMaxLifetimeDays": None},
        "after": {"keyMaxLifetimeDays": 90},
    }


@pytest.mark.parametrize("role", ROLES)
def test_only_owners_set_the_policy(
    request, organization, owner, admin, member, viewer, outsider, role
):
    response = set_policy(user_client(request.getfixturevalue(role)), organization, 30)

    if role == "owner":
        assert response.status_code == 200
    elif role == "outsider":
        assert (response.status_code, error_code(response)) == (404, "NOT_FOUND")
    else:
        assert (response.status_code, error_code(response)) == (403, "PERMISSION_DENIED")
    organization.refresh_from_db()
    assert (organization.key_max_lifetime_days == 30) == (role == "owner")


def test_an_admin_is_refused_before_the_body_is_read(admin, organization):
    response = user_client(admin).patch(org_url(organization), {"bogus": 1}, format="json")

    assert error_code(response) == "PERMISSION_DENIED"


@pytest.mark.parametrize("kind", list(KeyKind), ids=["pub", "secret", "org"])
def test_api_keys_cannot_set_the_policy(project, organization, kind):
    _api_key, credential = make_key(kind, project=project)

    response = set_policy(bearer_client(credential), organization, 30)

    assert error_code(response) == "KEY_MANAGEMENT_FORBIDDEN"


@pytest.mark.parametrize("days", [0, 3651, -1, "30", 1.5, True, [30]])
def test_the_policy_is_1_to_3650_days(owner, organization, days):
    response = set_policy(user_client(owner), organization, days)

    assert list(error_fields(response)) == ["keyMaxLifetimeDays"]
    organization.refresh_from_db()
    assert organization.key_max_lifetime_days is None


@pytest.mark.parametrize("days", [1, 3650])
def test_the_bounds_are_inclusive(owner, organization, days):
    assert set_policy(user_client(owner), organization, days).status_code == 200


@pytest.mark.parametrize(
    "body, fields",
    [({}, ["body"]), ({"name": "Renamed"}, ["name"])],  # {}: "Send at least one of"
)
def test_the_body_names_the_policy_and_nothing_else(owner, organization, body, fields):
    response = user_client(owner).patch(org_url(organization), body, format="json")

    assert list(error_fields(response)) == fields


def test_an_unknown_organization_is_not_found(owner):
    response = user_client(owner).patch(
        "/v1/organizations/not-a-uuid", {"keyMaxLifetimeDays": 30}, format="json"
    )

    assert (response.status_code, error_code(response)) == (404, "NOT_FOUND")


# Minting and rolling under the policy


@pytest.fixture
def policy(organization):
    organization.key_max_lifetime_days = 30
    organization.save()
    return organization


@pytest.mark.parametrize("kind", SECRET_KINDS, ids=SECRET_IDS)
def test_a_key_without_an_expiry_is_refused(owner, project, policy, kind):
    for expires_at in ("omit", None):
        response = mint(user_client(owner), kind, project, expires_at)

        assert response.status_code == 400
        assert "within 30 days" in error_fields(response)["expiresAt"][0]
    assert not ApiKey.objects.exists()


def test_a_one_day_policy_says_one_day(owner, project, organization):
    """An integration audit: "within 1 days"."""
    organization.key_max_lifetime_days = 1
    organization.save()
    response = mint(user_client(owner), KeyKind.SECRET, project)
    assert "within 1 day:" in error_fields(response)["expiresAt"][0]


@pytest.mark.parametrize("kind", SECRET_KINDS, ids=SECRET_IDS)
def test_a_key_expiring_beyond_the_policy_is_refused(owner, project, policy, kind):
    response = mint(
        user_client(owner), kind, project, timezone.now() + timedelta(days=30, minutes=1)
    )

    assert list(error_fields(response)) == ["expiresAt"]
    assert not ApiKey.objects.exists()


def test_the_refusal_names_the_latest_second_it_takes(owner, project, policy, time_machine):
    """A dates audit: one second beyond was refused with the limit's minute, which the
    refused time was inside of."""
    time_machine.move_to(timezone.now().replace(microsecond=0), tick=False)
    latest = timezone.now() + timedelta(days=30)

    response = mint(user_client(owner), KeyKind.SECRET, project, latest + timedelta(seconds=1))

    [message] = error_fields(response)["expiresAt"]
    assert f"no later than {latest:%Y-%m-%d %H:%M:%S} UTC" in message
    assert mint(user_client(owner), KeyKind.SECRET, project, latest).status_code == 201


@pytest.mark.parametrize("kind", SECRET_KINDS, ids=SECRET_IDS)
def test_a_key_beyond_the_policy_and_with_another_bad_field_is_told_both(
    owner, project, policy, kind
):
    """Every invalid field at once (SPEC §3), the policy's included."""
    body = {
        "name": "Deploys",
        "permissions": ["analysis:read"],
        "expiresAt": iso(timezone.now() + timedelta(days=31)),
        "rateLimit": {"requests": 0, "perSeconds": 60},
    }
    response = user_client(owner).post(collection_url(kind, project), body, format="json")

    assert set(error_fields(response)) == {"expiresAt", "rateLimit"}
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize("kind", SECRET_KINDS, ids=SECRET_IDS)
def test_a_key_expiring_within_the_policy_is_minted(owner, project, policy, kind):
    response = mint(
        user_client(owner), kind, project, timezone.now() + timedelta(days=29, hours=23)
    )

    assert response.status_code == 201


def test_sdk_keys_are_not_affected(owner, project, policy):
    assert mint(user_client(owner), KeyKind.PUBLIC, project).status_code == 201


@pytest.mark.parametrize("kind", SECRET_KINDS, ids=SECRET_IDS)
def test_lifting_the_policy_works_at_once(owner, project, policy, kind):
    client = user_client(owner)
    assert mint(client, kind, project).status_code == 400

    set_policy(client, policy, None)

    assert mint(client, kind, project).status_code == 201


def test_existing_keys_are_not_touched(owner, project, organization):
    forever, plaintext = make_key(KeyKind.SECRET, project=project)

    set_policy(user_client(owner), organization, 30)

    forever.refresh_from_db()
    assert forever.expires_at is None
    assert bearer_client(plaintext).get("/v1/me").status_code == 200


@pytest.mark.parametrize("kind", SECRET_KINDS, ids=SECRET_IDS)
def test_a_key_minted_for_longer_before_the_policy_rolls_into_one_that_fits(
    owner, project, organization, kind
):
    """Found by a review: the successor's default expiry, the old key's lifetime from now
    (365 days), outgrew a 90-day policy set since, and the roll was refused; these are the
    keys the page lists for rolling. The default is capped at the policy."""
    old, _ = make_key(kind, project=project, expires_at=timezone.now() + timedelta(days=365))
    organization.key_max_lifetime_days = 90
    organization.save()

    rolled = user_client(owner).post(
        key_url(kind, project, old, "roll"), {"graceSeconds": 60}, format="json"
    )

    assert rolled.status_code == 201, rolled.content
    successor = ApiKey.objects.get(replaces=old)
    latest = timezone.now() + timedelta(days=90)
    assert latest - timedelta(minutes=1) < successor.expires_at <= latest


@pytest.mark.parametrize("kind", SECRET_KINDS, ids=SECRET_IDS)
def test_a_roll_needs_an_expiry_within_the_policy(owner, project, organization, kind):
    old, _ = make_key(kind, project=project)  # minted before the policy: no expiry
    organization.key_max_lifetime_days = 30
    organization.save()
    client = user_client(owner)
    url = key_url(kind, project, old, "roll")

    inherited = client.post(url, {"graceSeconds": 60}, format="json")
    too_late = client.post(
        url,
        {"graceSeconds": 60, "expiresAt": iso(timezone.now() + timedelta(days=31))},
        format="json",
    )
    within = client.post(
        url,
        {"graceSeconds": 60, "expiresAt": iso(timezone.now() + timedelta(days=30))},
        format="json",
    )

    assert list(error_fields(inherited)) == list(error_fields(too_late)) == ["expiresAt"]
    assert within.status_code == 201
    old.refresh_from_db()
    assert old.expires_at is not None  # the grace started only with the successful roll


def test_an_sdk_key_rolls_without_an_expiry_under_a_policy(owner, project, policy):
    old, _ = make_key(KeyKind.PUBLIC, project=project)

    response = user_client(owner).post(
        key_url(KeyKind.PUBLIC, project, old, "roll"), {"graceSeconds": 0}, format="json"
    )

    assert response.status_code == 201
    assert response.json()["expiresAt"] is None


@pytest.mark.usefixtures("before_the_sunset")  # legacy keys work on any day
def test_a_legacy_replacement_gets_the_longest_expiry_the_policy_allows(owner, project, policy):
    legacy, _ = make_legacy_key(project)
    before = timezone.now()

    minted = replace_legacy_key(actor=owner, api_key=legacy)

    expires_at = minted.api_key.expires_at
    assert before + timedelta(days=30) <= expires_at <= timezone.now() + timedelta(days=30)


def test_keys_outliving_the_policy_are_listed(project, organization, outsider):
    now = timezone.now()
    forever, _ = make_key(KeyKind.SECRET, project=project, name="forever")
    long, _ = make_key(KeyKind.ORGANIZATION, project=project, expires_at=now + timedelta(days=60))
    make_key(KeyKind.SECRET, project=project, expires_at=now + timedelta(days=10))
    make_key(KeyKind.PUBLIC, project=project)  # SDK keys are exempt
    revoked, _ = make_key(KeyKind.SECRET, project=project)
    ApiKey.objects.filter(pk=revoked.pk).update(revoked_at=now)
    theirs = outsider.memberships.get().organization.projects.get()
    make_key(KeyKind.SECRET, project=theirs)

    assert not guardrails.keys_outliving_policy(organization, now).exists()
    organization.key_max_lifetime_days = 30

    assert list(guardrails.keys_outliving_policy(organization, now)) == [forever, long]
