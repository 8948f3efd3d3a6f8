"""Webhooks API (SPEC §4.11): owners and admins only, outsiders 404, the secret shown once."""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from django.test import override_settings

from apps.apikeys.keyformat import KeyKind
from apps.audit.models import AuditEvent
from apps.webhooks import crypto
from apps.webhooks.models import Delivery, EventType, Webhook
from tests.apikeys.test_openapi import assert_matches
from tests.apikeys.test_openapi import document as openapi_document
from tests.factories import UserFactory, make_key
from tests.orgs.helpers import bearer_client, error_code, error_fields, user_client

pytestmark = pytest.mark.django_db

ALL_EVENTS = list(EventType.values)
PUBLIC_URL = "https://8.8.8.8/hooks/sigsentry?token=path-secret"


def hooks_url(org) -> str:
    return f"/v1/organizations/{org.id}/webhooks"


def create(client, org, url=PUBLIC_URL, events=None):
    return client.post(hooks_url(org), {"url": url, "events": events or ALL_EVENTS}, format="json")


def test_an_owner_creates_a_webhook_and_sees_the_secret_once(owner, organization):
    client = user_client(owner)

    response = create(client, organization)

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "url", "events", "createdAt", "secret", "status", "disabledAt"}
    assert re.fullmatch(r"whsec_[0-9A-Za-z]{32}", body["secret"])
    assert (body["url"], body["events"], body["status"]) == (PUBLIC_URL, ALL_EVENTS, "enabled")
    listed = client.get(hooks_url(organization)).json()["results"]
    assert [w["id"] for w in listed] == [body["id"]]
    assert "secret" not in listed[0]
    assert "secret" not in client.get(f"{hooks_url(organization)}/{body['id']}").json()
    webhook = Webhook.objects.get()
    assert body["secret"] not in webhook.secret_ciphertext
    assert crypto.decrypt_secret(webhook.secret_ciphertext) == body["secret"]


@override_settings(THROTTLE_RATES=settings.THROTTLE_RATES | {"webhook_create_user": (2, 3600)})
def test_webhook_creations_are_throttled_per_user_across_organizations(owner, organization):
    """Found by the DoS audit: each creation waits up to 5 s for its URL's host lookup, in
    the request, and a free account could ask again and again. Refused ones count too."""
    client = user_client(owner)
    second = client.post("/v1/organizations", {"name": "Second"}, format="json").json()
    second_org = type(organization).objects.get(pk=second["id"])

    sent = [
        create(client, organization, "https://10.0.0.1/private").status_code,
        create(client, second_org).status_code,
        create(client, organization).status_code,
    ]

    assert sent == [400, 201, 429]
    assert Webhook.objects.count() == 1
    assert create(user_client(UserFactory()), organization).status_code == 404


def test_creation_is_audited_by_host_never_by_full_url(owner, organization):
    create(user_client(owner), organization)

    event = AuditEvent.objects.get(action="webhook.created")
    assert (event.actor_label, event.target_type, event.target_label) == (
        owner.email,
        "webhook",
        "8.8.8.8",
    )
    assert "path-secret" not in str(AuditEvent.objects.values())


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_members_and_viewers_cannot_see_or_manage_webhooks(request, role, owner, organization):
    created = create(user_client(owner), organization).json()
    client = user_client(request.getfixturevalue(role))

    assert client.get(hooks_url(organization)).status_code == 403
    assert create(client, organization).status_code == 403
    assert client.delete(f"{hooks_url(organization)}/{created['id']}").status_code == 403
    assert client.get(f"{hooks_url(organization)}/{created['id']}/deliveries").status_code == 403
    assert Webhook.objects.count() == 1


def test_an_admin_manages_webhooks(admin, organization):
    client = user_client(admin)
    created = create(client, organization).json()

    assert client.delete(f"{hooks_url(organization)}/{created['id']}").status_code == 204
    assert not Webhook.objects.exists()
    assert AuditEvent.objects.filter(action="webhook.deleted").count() == 1


def test_outsiders_get_404_for_every_webhook_endpoint(outsider, owner, organization):
    created = create(user_client(owner), organization).json()
    client = user_client(outsider)
    base = f"{hooks_url(organization)}/{created['id']}"

    for response in (
        client.get(hooks_url(organization)),
        create(client, organization),
        client.get(base),
        client.delete(base),
        client.post(f"{base}/enable"),
        client.get(f"{base}/deliveries"),
    ):
        assert response.status_code == 404
        assert error_code(response) == "NOT_FOUND"
    assert Webhook.objects.count() == 1


def test_a_webhook_of_another_organization_is_not_found_through_ones_own(
    outsider, owner, organization
):
    theirs = create(user_client(outsider), outsider.memberships.get().organization).json()
    client = user_client(owner)

    assert client.delete(f"{hooks_url(organization)}/{theirs['id']}").status_code == 404
    assert client.get(f"{hooks_url(organization)}/{theirs['id']}/deliveries").status_code == 404
    assert client.get(f"{hooks_url(organization)}/not-a-uuid").status_code == 404
    assert Webhook.objects.count() == 1


def test_api_keys_cannot_manage_webhooks(organization):
    _key, plaintext = make_key(KeyKind.ORGANIZATION, organization=organization)

    response = create(bearer_client(plaintext), organization)

    assert response.status_code == 403
    assert error_code(response) == "KEY_MANAGEMENT_FORBIDDEN"


@override_settings(WEBHOOKS_ALLOW_PRIVATE=False)
@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://localhost:8443/hook",
        "https://10.1.2.3/hook",
        "https://192.168.0.10/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/hook",
        "http://8.8.8.8/hook",
        "ftp://8.8.8.8/hook",
        "not a url",
        None,
    ],
)
def test_unsafe_urls_are_refused(owner, organization, url):
    response = create(user_client(owner), organization, url=url)

    assert response.status_code == 400
    assert "url" in error_fields(response)
    assert not Webhook.objects.exists()


@pytest.mark.parametrize("events", [[], ["key.deleted"], "key.minted", [1], None], ids=str)
def test_events_must_be_a_non_empty_list_of_known_types(owner, organization, events):
    response = user_client(owner).post(
        hooks_url(organization), {"url": PUBLIC_URL, "events": events}, format="json"
    )

    assert response.status_code == 400
    assert "events" in error_fields(response)


def test_every_failing_field_is_reported_at_once(owner, organization):
    response = user_client(owner).post(hooks_url(organization), {}, format="json")

    assert response.status_code == 400
    assert set(error_fields(response)) == {"url", "events"}
    assert not Webhook.objects.exists()


def test_an_organization_has_at_most_20_webhooks(owner, organization):
    client = user_client(owner)
    for _ in range(20):
        assert create(client, organization).status_code == 201

    response = create(client, organization)

    assert response.status_code == 400
    assert Webhook.objects.count() == 20


def test_the_delivery_log_lists_each_event_once(settings, owner, organization, project):
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    client = user_client(owner)
    created = create(client, organization, url="http://127.0.0.1:9/hook").json()
    _key, _ = make_key(KeyKind.SECRET, project=project)
    Delivery.objects.update(attempts=2, last_status_code=500)

    results = client.get(f"{hooks_url(organization)}/{created['id']}/deliveries").json()["results"]

    [row] = results
    delivery = Delivery.objects.get()
    assert row["eventId"] == str(delivery.event_id)
    assert (row["type"], row["status"], row["attempts"], row["lastStatusCode"]) == (
        "key.minted",
        "pending",
        2,
        500,
    )
    assert set(row) >= {"eventId", "type", "status", "attempts", "lastStatusCode", "lastAttemptAt"}


def test_a_disabled_webhook_is_enabled_again_with_one_call(owner, organization):
    client = user_client(owner)
    created = create(client, organization).json()
    Webhook.objects.update(disabled_at="2026-01-01T00:00:00Z", consecutive_failures=100)

    response = client.post(f"{hooks_url(organization)}/{created['id']}/enable")

    assert response.status_code == 200
    assert (response.json()["status"], response.json()["disabledAt"]) == ("enabled", None)
    webhook = Webhook.objects.get()
    assert (webhook.is_enabled, webhook.consecutive_failures) == (True, 0)
    assert AuditEvent.objects.filter(action="webhook.enabled").count() == 1


document = openapi_document  # the module-scoped fixture, shared


def test_responses_match_the_openapi_document(document, settings, owner, organization, project):
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    client = user_client(owner)
    created = create(client, organization, url="http://127.0.0.1:9/hook")
    make_key(KeyKind.SECRET, project=project)
    base = f"{hooks_url(organization)}/{created.json()['id']}"

    for response in (
        created,
        client.get(hooks_url(organization)),
        client.get(base),
        client.get(f"{base}/deliveries"),
        client.post(f"{base}/enable"),
        create(client, organization, url="ftp://x"),
        client.get(f"{hooks_url(organization)}/{organization.id}"),
    ):
        assert_matches(document, response)
