"""Key lifecycle beyond mint and revoke: roll with a grace period, leak reports (SPEC §4.7)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from apps.apikeys import api as keys_api
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from apps.audit.models import AuditEvent
from tests.factories import ProjectFactory, make_key
from tests.orgs.helpers import (
    LEGACY_KEY,
    bearer_client,
    collection_url,
    error_code,
    error_fields,
    key_url,
    legacy_key,
    user_client,
)

pytestmark = pytest.mark.django_db

LEAKED = "/v1/leaked-keys"
KINDS = list(KeyKind)
KIND_IDS = ["sdk-keys", "project-api-keys", "org-api-keys"]
LAST_INSTANT = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


def works(plaintext: str, project) -> bool:
    return (
        bearer_client(plaintext).get("/v1/me", HTTP_X_PROJECT_ID=str(project.id)).status_code == 200
    )


def roll(client, kind, project, api_key, grace_seconds):
    return client.post(
        key_url(kind, project, api_key, "roll"), {"graceSeconds": grace_seconds}, format="json"
    )


# Roll


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_roll_mints_a_successor_and_the_old_key_works_until_the_grace_ends(owner, project, kind):
    old, old_plaintext = make_key(
        kind,
        project=project,
        name="Deploys",
        permissions=None if kind is KeyKind.PUBLIC else ["analysis:read"],
    )
    before = timezone.now()

    response = roll(user_client(owner), kind, project, old, 3600)

    assert response.status_code == 201
    new = response.json()
    assert new["key"] != old_plaintext
    assert new["id"] != str(old.id)
    assert (new["name"], new["permissions"]) == ("Deploys", list(old.permissions))
    assert new["key"].startswith(kind.prefix)
    old.refresh_from_db()
    assert (
        before + timedelta(seconds=3600)
        <= old.expires_at
        <= timezone.now() + timedelta(seconds=3600)
    )
    assert works(old_plaintext, project)
    assert works(new["key"], project)

    # The grace period ends.
    ApiKey.objects.filter(pk=old.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    rejected = bearer_client(old_plaintext).get("/v1/me", HTTP_X_PROJECT_ID=str(project.id))
    assert rejected.status_code == 401
    assert error_code(rejected) == "KEY_EXPIRED"
    assert works(new["key"], project)


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_a_key_whose_never_is_the_last_instant_of_9999_rolls(owner, project, kind, time_machine):
    """The successor inherits the old key's lifetime from now: capped at the last instant a
    timestamp holds (it overflowed, a 500, from the next second on)."""
    old, _ = make_key(kind, project=project, expires_at=LAST_INSTANT)
    time_machine.move_to(timezone.now() + timedelta(days=1))

    response = roll(user_client(owner), kind, project, old, 60)

    assert response.status_code == 201, response.content
    successor = ApiKey.objects.get(pk=response.json()["id"])
    assert successor.expires_at == LAST_INSTANT


def test_roll_with_no_grace_retires_the_old_key_at_once(owner, project):
    old, old_plaintext = make_key(KeyKind.SECRET, project=project)

    response = roll(user_client(owner), KeyKind.SECRET, project, old, 0)

    assert response.status_code == 201
    assert error_code(bearer_client(old_plaintext).get("/v1/me")) == "KEY_EXPIRED"
    assert works(response.json()["key"], project)


def test_roll_keeps_an_sdk_keys_allowed_origins(owner, project):
    old, _ = make_key(KeyKind.PUBLIC, project=project, allowed_origins=["https://shop.example.com"])

    new = roll(user_client(owner), KeyKind.PUBLIC, project, old, 60).json()

    assert new["allowedOrigins"] == ["https://shop.example.com"]


def test_roll_sets_an_sdk_keys_allowed_origins_when_sent(owner, project):
    """SPEC §4.7: origins are set at mint or roll; an unbound key rolled with origins must
    not stay open to every origin."""
    old, _ = make_key(KeyKind.PUBLIC, project=project)
    body = {"graceSeconds": 0, "allowedOrigins": ["https://Shop.Example.com:443"]}

    response = user_client(owner).post(
        key_url(KeyKind.PUBLIC, project, old, "roll"), body, format="json"
    )

    assert response.status_code == 201
    assert response.json()["allowedOrigins"] == ["https://shop.example.com"]
    assert ApiKey.objects.get(id=response.json()["id"]).allowed_origins == [
        "https://shop.example.com"
    ]


@pytest.mark.parametrize(
    ("kind", "origins"),
    [(KeyKind.PUBLIC, ["http://shop.example.com"]), (KeyKind.SECRET, ["https://a.example"])],
)
def test_roll_with_bad_or_misplaced_origins_is_refused_and_changes_nothing(
    owner, project, kind, origins
):
    old, _ = make_key(kind, project=project)

    response = user_client(owner).post(
        key_url(kind, project, old, "roll"),
        {"graceSeconds": 0, "allowedOrigins": origins},
        format="json",
    )

    assert (response.status_code, error_code(response)) == (400, "VALIDATION_ERROR")
    assert "allowedOrigins" in error_fields(response)
    assert ApiKey.objects.filter(project=project).count() == 1
    old.refresh_from_db()
    assert old.expires_at is None


def test_the_old_keys_list_entry_shows_its_new_expiry_and_the_successor_comes_first(admin, project):
    old, _ = make_key(KeyKind.SECRET, project=project)
    client = user_client(admin)
    new = roll(client, KeyKind.SECRET, project, old, 600).json()

    results = client.get(collection_url(KeyKind.SECRET, project)).json()["results"]

    assert [k["id"] for k in results] == [new["id"], str(old.id)]
    assert results[1]["expiresAt"] is not None
    assert results[1]["status"] == "active"
    assert new["key"] not in str(results)


def test_roll_is_audited(owner, project):
    old, _ = make_key(KeyKind.SECRET, project=project)

    new = roll(user_client(owner), KeyKind.SECRET, project, old, 60).json()

    event = AuditEvent.objects.get(action="key.rolled")
    assert event.target_id == new["id"]
    assert event.details["replaces"] == str(old.id)
    assert new["key"] not in str(event.details)


@pytest.mark.parametrize(
    "grace",
    [-1, 604801, "60", 1.5, True, None],
    ids=["negative", "over-a-week", "string", "float", "bool", "missing"],
)
def test_roll_needs_a_grace_of_0_to_604800_seconds(owner, project, grace):
    old, _ = make_key(KeyKind.SECRET, project=project)

    response = roll(user_client(owner), KeyKind.SECRET, project, old, grace)

    assert "graceSeconds" in error_fields(response)
    old.refresh_from_db()
    assert old.expires_at is None
    assert ApiKey.objects.count() == 1


def test_a_roll_reports_every_invalid_field_at_once(owner, project):
    old, _ = make_key(KeyKind.SECRET, project=project)
    body = {"graceSeconds": -1, "expiresAt": "2001-01-01T00:00:00Z", "permissions": ["nope"]}

    response = user_client(owner).post(
        key_url(KeyKind.SECRET, project, old, "roll"), body, format="json"
    )

    assert response.status_code == 400
    assert set(error_fields(response)) == {"graceSeconds", "expiresAt", "permissions"}
    old.refresh_from_db()
    assert old.expires_at is None
    assert ApiKey.objects.count() == 1


def test_a_week_of_grace_is_allowed(owner, project):
    old, _ = make_key(KeyKind.SECRET, project=project)

    assert roll(user_client(owner), KeyKind.SECRET, project, old, 604800).status_code == 201


@pytest.mark.parametrize("state", ["revoked", "expired"])
def test_only_an_active_key_can_be_rolled(owner, project, state):
    old, _ = make_key(KeyKind.SECRET, project=project)
    field = "revoked_at" if state == "revoked" else "expires_at"
    ApiKey.objects.filter(pk=old.pk).update(**{field: timezone.now() - timedelta(seconds=1)})

    response = roll(user_client(owner), KeyKind.SECRET, project, old, 60)

    assert response.status_code == 400
    assert error_code(response) == "VALIDATION_ERROR"
    assert ApiKey.objects.count() == 1


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_a_key_in_its_grace_is_not_rolled_again(owner, project, kind):
    """A retried or double-submitted roll: a second successor would inherit the grace's end
    as its expiry and die with the old key."""
    old, old_plaintext = make_key(kind, project=project)
    client = user_client(owner)
    first = roll(client, kind, project, old, 3600)
    assert first.status_code == 201 and first.json()["expiresAt"] is None
    old.refresh_from_db()
    grace_ends = old.expires_at

    again = roll(client, kind, project, old, 3600)

    assert again.status_code == 400 and error_code(again) == "VALIDATION_ERROR"
    assert "successor" in error_fields(again)["keyId"][0]
    assert ApiKey.objects.count() == 2
    old.refresh_from_db()
    assert old.expires_at == grace_ends
    assert works(old_plaintext, project) and works(first.json()["key"], project)


# Leaked-key reports


def report(client, keys):
    return client.post(LEAKED, {"keys": keys}, format="json")


def test_a_reported_key_is_dead_on_the_next_request(api_client, project):
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)

    response = report(api_client, [plaintext])

    assert response.status_code == 202
    assert response.json() == {"received": 1}
    rejected = bearer_client(plaintext).get("/v1/me")
    assert rejected.status_code == 401
    assert error_code(rejected) == "KEY_REVOKED"
    api_key.refresh_from_db()
    assert api_key.revoked_reason == "leak_report"


@pytest.mark.parametrize(
    ("kind", "action"),
    [
        (KeyKind.SECRET, "key.revoked_by_leak_report"),
        (KeyKind.PUBLIC, "key.leak_reported"),
    ],
    ids=["secret-revoked", "sdk-flagged"],
)
def test_a_leak_report_is_audited_in_the_keys_organization(
    api_client, owner, project, kind, action
):
    api_key, plaintext = make_key(kind, project=project)

    report(api_client, [f"  {plaintext}\n"])

    events = (
        user_client(owner)
        .get(f"/v1/organizations/{project.organization_id}/audit-events", {"action": action})
        .json()["results"]
    )
    assert len(events) == 1
    assert events[0]["actor"] == {"type": "anonymous"}
    assert events[0]["target"] == {"type": "key", "id": str(api_key.id), "label": api_key.prefix}
    assert events[0]["projectId"] == str(project.id)
    assert events[0]["ip"] is None  # the reporter's: for operators only (the admin)
    assert AuditEvent.objects.get(id=events[0]["id"]).ip == "127.0.0.1"
    assert plaintext not in str(AuditEvent.objects.values())


def test_the_answer_is_the_same_for_a_real_key_and_for_garbage(api_client, project):
    _key, plaintext = make_key(KeyKind.SECRET, project=project)
    _other, unknown = make_key(KeyKind.SECRET, project=ProjectFactory())
    ApiKey.objects.filter(pk=_other.pk).delete()  # well-formed, valid checksum, never existed

    answers = []
    for keys in ([plaintext], [unknown], ["not a key at all"]):
        started = time.monotonic()
        response = report(api_client, keys)
        answers.append(
            (
                response.status_code,
                response.content,
                response["Content-Type"],
                time.monotonic() - started,
            )
        )

    assert {answer[:3] for answer in answers} == {(202, b'{"received":1}', "application/json")}
    assert all(elapsed >= keys_api.LEAK_REPORT_MIN_SECONDS for *_rest, elapsed in answers)


@pytest.mark.usefixtures("before_the_sunset")  # legacy keys work on any day
def test_a_report_revokes_secret_keys_of_every_kind_and_tenant_and_flags_sdk_keys(
    api_client, project
):
    keys = {kind: make_key(kind, project=ProjectFactory()) for kind in KINDS}
    legacy = legacy_key(project)
    plaintexts = [plaintext for _key, plaintext in keys.values()] + [LEGACY_KEY, "junk"]

    response = report(api_client, plaintexts)

    assert response.json() == {"received": 5}
    sdk_key, sdk_plaintext = keys[KeyKind.PUBLIC]
    assert list(ApiKey.objects.filter(revoked_at__isnull=True)) == [sdk_key]
    assert AuditEvent.objects.filter(action="key.revoked_by_leak_report").count() == 3
    flagged = AuditEvent.objects.get(action="key.leak_reported")
    assert flagged.target_id == str(sdk_key.id)
    assert works(sdk_plaintext, sdk_key.project)
    legacy.refresh_from_db()
    assert legacy.revoked_at is not None


def test_a_reported_sdk_key_keeps_working_and_is_flagged_once_a_day(api_client, project):
    api_key, plaintext = make_key(KeyKind.PUBLIC, project=project)

    for _ in range(3):
        assert report(api_client, [plaintext]).status_code == 202

    assert works(plaintext, project)
    api_key.refresh_from_db()
    assert api_key.revoked_at is None
    flagged = AuditEvent.objects.filter(action="key.leak_reported")
    assert [(e.target_id, e.actor_type) for e in flagged] == [(str(api_key.id), "anonymous")]


def test_reporting_a_revoked_key_again_changes_nothing(api_client, project):
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)
    report(api_client, [plaintext])
    api_key.refresh_from_db()
    first_revoked_at = api_key.revoked_at

    response = report(api_client, [plaintext])

    assert response.status_code == 202
    api_key.refresh_from_db()
    assert api_key.revoked_at == first_revoked_at
    assert AuditEvent.objects.filter(action="key.revoked_by_leak_report").count() == 1


def test_a_report_needs_no_credential_and_ignores_a_bad_one(api_client, project):
    _key, plaintext = make_key(KeyKind.SECRET, project=project)

    response = api_client.post(
        LEAKED, {"keys": [plaintext]}, format="json", HTTP_AUTHORIZATION="Bearer junk"
    )

    assert response.status_code == 202
    assert not works(plaintext, project)


@pytest.mark.parametrize(
    "body",
    [{"keys": ["k"] * 101}, {"keys": "ss_secret_x"}, {"keys": [1, 2]}, {}, {"keys": None}],
    ids=["101-keys", "string", "numbers", "missing", "null"],
)
def test_a_malformed_report_is_a_validation_error(api_client, body):
    response = api_client.post(LEAKED, body, format="json")

    assert response.status_code == 400
    assert "keys" in error_fields(response)


def test_a_report_of_exactly_100_strings_is_accepted(api_client):
    response = report(api_client, ["x"] * 100)

    assert response.json() == {"received": 100}


@pytest.mark.usefixtures("throttle_clock")
@override_settings(THROTTLE_RATES=settings.THROTTLE_RATES | {"leak_report_ip": (2, 60)})
def test_reports_are_throttled_per_client(api_client, project):
    _key, plaintext = make_key(KeyKind.SECRET, project=project)
    for _ in range(2):
        assert report(api_client, ["junk"]).status_code == 202

    response = report(api_client, [plaintext])

    assert response.status_code == 429
    assert error_code(response) == "RATE_LIMITED"
    assert int(response["Retry-After"]) > 0
    assert works(plaintext, project)
