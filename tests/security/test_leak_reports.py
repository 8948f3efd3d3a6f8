"""Finding 3: a public leak report never revokes an SDK key (SPEC §4.7).

The attack: `ss_pub_` keys live in web pages by design, so any visitor could
copy one, POST it to /v1/leaked-keys and break the customer's SDK integration,
again after every new key. Now a report flags an SDK key (`key.leak_reported`)
and leaves it working; secret, organization and legacy keys are still revoked
(`key.revoked_by_leak_report`). The answer is `202 {"received": n}` either way.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.accounts.services import start_session
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from apps.apikeys.services import revoke_key
from apps.audit.models import AuditEvent
from tests.factories import make_key, make_legacy_key
from tests.orgs.helpers import bearer_client
from tests.pages import logged_in

pytestmark = pytest.mark.django_db

LEAKED = "/v1/leaked-keys"
HOUR = timedelta(hours=1)


def report(client, keys: list[str]):
    return client.post(LEAKED, {"keys": keys}, format="json", REMOTE_ADDR="203.0.113.50")


def works(plaintext: str) -> bool:
    return bearer_client(plaintext).get("/v1/me").status_code == 200


def actions() -> list[str]:
    return sorted(AuditEvent.objects.values_list("action", flat=True))


def test_a_reported_sdk_key_keeps_working_and_is_flagged(api_client, project):
    sdk_key, plaintext = make_key(KeyKind.PUBLIC, project=project)
    AuditEvent.objects.all().delete()

    response = report(api_client, [plaintext])

    assert response.status_code == 202
    assert response.json() == {"received": 1}
    assert works(plaintext)
    sdk_key.refresh_from_db()
    assert (sdk_key.revoked_at, sdk_key.revoked_reason) == (None, "")
    event = AuditEvent.objects.get()
    assert event.action == "key.leak_reported"
    assert (event.organization_id, event.project_id) == (project.organization_id, project.id)
    assert (event.target_type, event.target_id, event.target_label) == (
        "key",
        str(sdk_key.id),
        sdk_key.prefix,
    )
    assert (event.actor_type, event.ip) == ("anonymous", "203.0.113.50")
    assert plaintext not in str(event.details)


def test_reporting_every_new_sdk_key_breaks_nothing(api_client, project):
    for _ in range(3):
        _sdk_key, plaintext = make_key(KeyKind.PUBLIC, project=project)
        for _ in range(2):
            report(api_client, [plaintext])
        assert works(plaintext)

    assert not ApiKey.objects.filter(revoked_at__isnull=False).exists()


@pytest.mark.usefixtures("before_the_sunset")  # legacy keys work on any day
def test_one_report_revokes_the_secret_keys_and_flags_the_sdk_key(api_client, project):
    sdk_key, sdk = make_key(KeyKind.PUBLIC, project=project)
    secret_key, secret = make_key(KeyKind.SECRET, project=project)
    org_key, org = make_key(KeyKind.ORGANIZATION, organization=project.organization)
    legacy_key, legacy = make_legacy_key(project)
    AuditEvent.objects.all().delete()

    response = report(api_client, [sdk, secret, org, legacy, "junk"])

    assert response.json() == {"received": 5}
    assert works(sdk)
    for plaintext in (secret, org, legacy):
        assert bearer_client(plaintext).get("/v1/me").json()["error"]["code"] == "KEY_REVOKED"
    assert actions() == ["key.leak_reported"] + ["key.revoked_by_leak_report"] * 3
    revoked_ids = set(
        AuditEvent.objects.filter(action="key.revoked_by_leak_report").values_list(
            "target_id", flat=True
        )
    )
    assert revoked_ids == {str(secret_key.id), str(org_key.id), str(legacy_key.id)}
    assert AuditEvent.objects.get(action="key.leak_reported").target_id == str(sdk_key.id)


def test_the_answer_does_not_tell_an_sdk_key_from_a_secret_key_or_garbage(api_client, project):
    _sdk_key, sdk = make_key(KeyKind.PUBLIC, project=project)
    _secret_key, secret = make_key(KeyKind.SECRET, project=project)

    answers = {report(api_client, [candidate]).content for candidate in (sdk, secret, "junk")}

    assert answers == {b'{"received":1}'}


def test_a_revoked_or_unknown_sdk_key_is_not_flagged(api_client, project, owner):
    revoked, plaintext = make_key(KeyKind.PUBLIC, project=project)
    revoke_key(actor=owner, api_key=revoked)
    AuditEvent.objects.all().delete()

    report(api_client, [plaintext])

    assert actions() == []


@pytest.mark.parametrize("kind", [KeyKind.SECRET, KeyKind.PUBLIC])
def test_an_expired_key_is_neither_revoked_nor_flagged(api_client, project, time_machine, kind):
    """SPEC §4.7 acts on active keys. Found by an audit: an expired key was revoked, with an
    audit event, a webhook event and an email saying its requests 'now fail with 401
    KEY_REVOKED' about a key that was already dead."""
    time_machine.move_to(timezone.now(), tick=False)
    expired, plaintext = make_key(kind, project=project, expires_at=timezone.now() + HOUR)
    time_machine.shift(HOUR * 2)
    AuditEvent.objects.all().delete()

    assert report(api_client, [plaintext]).status_code == 202

    expired.refresh_from_db()
    assert (expired.revoked_at, expired.leak_reported_at) == (None, None)
    assert actions() == []


def test_the_reporters_ip_is_kept_for_operators_never_shown_to_the_organization(
    api_client, project, owner
):
    """A privacy audit: the reporter (a researcher, a scanner) is a stranger to the key's
    organization, which saw the reporter's IP in its audit log (API and page)."""
    _key, plaintext = make_key(KeyKind.SECRET, project=project)
    assert report(api_client, [plaintext]).status_code == 202
    event = AuditEvent.objects.get(action="key.revoked_by_leak_report")
    assert event.ip == "203.0.113.50"  # kept: the admin shows it to operators

    org_id = project.organization_id
    api = bearer_client(start_session(owner).access)
    events = api.get(f"/v1/organizations/{org_id}/audit-events").json()["results"]
    [shown] = [e for e in events if e["action"] == "key.revoked_by_leak_report"]
    assert shown["actor"] == {"type": "anonymous"} and shown["ip"] is None
    page = logged_in(owner).get(f"/orgs/{org_id}/audit-log/").content.decode()
    assert "key.revoked_by_leak_report" in page or "leak report" in page.lower()
    assert "203.0.113.50" not in page
