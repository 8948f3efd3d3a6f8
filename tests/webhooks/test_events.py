"""Which key changes record which event (SPEC §4.11), in the change's own transaction."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.apikeys.keyformat import KeyKind
from apps.apikeys.leaks import report_leaked_keys
from apps.apikeys.services import (
    record_key_updated,
    revoke_key,
    roll_key,
    update_key,
)
from apps.webhooks import metrics
from apps.webhooks.models import Event
from tests.factories import make_key

pytestmark = pytest.mark.django_db


def events() -> list[tuple[str, str]]:
    return [(e.type, e.data["key"]["id"]) for e in Event.objects.order_by("created_at", "id")]


def test_each_key_change_records_its_event_with_the_key_object(owner, project, organization):
    secret, secret_text = make_key(KeyKind.SECRET, project=project)
    sdk, sdk_text = make_key(KeyKind.PUBLIC, project=project)
    revoke_key(actor=owner, api_key=secret)
    revoke_key(actor=owner, api_key=secret)  # idempotent: no second event
    rolled = roll_key(actor=owner, api_key=sdk, grace_seconds=60)
    update_key(
        actor=owner, api_key=rolled.api_key, changes={"allowedOrigins": ["https://shop.example"]}
    )
    leaked, leaked_text = make_key(KeyKind.ORGANIZATION, organization=organization)
    report_leaked_keys(candidates=[leaked_text, rolled.key])

    recorded = events()
    assert recorded[:6] == [
        ("key.minted", str(secret.id)),
        ("key.minted", str(sdk.id)),
        ("key.revoked", str(secret.id)),
        ("key.rolled", str(rolled.api_key.id)),
        ("key.updated", str(rolled.api_key.id)),
        ("key.minted", str(leaked.id)),
    ]
    # One report, one moment: these two share their time.
    assert set(recorded[6:]) == {
        ("key.revoked_by_leak_report", str(leaked.id)),
        ("key.leak_reported", str(rolled.api_key.id)),
    }
    updated = Event.objects.get(type="key.updated").data["key"]
    assert updated["allowedOrigins"] == ["https://shop.example"]
    assert Event.objects.get(type="key.revoked").data["key"]["status"] == "revoked"
    text = str(list(Event.objects.values_list("data", flat=True)))
    for plaintext in (secret_text, sdk_text, rolled.key, leaked_text):
        assert plaintext not in text


def test_the_key_updated_hook_records_the_current_key(project):
    api_key, _ = make_key(KeyKind.SECRET, project=project, name="Before")
    type(api_key).objects.filter(pk=api_key.pk).update(name="After")

    record_key_updated(api_key=api_key)

    event = Event.objects.get(type="key.updated")
    assert event.data["key"]["name"] == "After"


def test_queue_depth_and_oldest_undelivered_age(settings, owner, organization, project):
    from apps.webhooks.services import create_webhook

    settings.WEBHOOKS_ALLOW_PRIVATE = True
    empty = metrics.queue_state()
    assert (empty.depth, empty.oldest_age_seconds) == (0, None)
    create_webhook(
        actor=owner, organization=organization, url="http://127.0.0.1:9/x", events=["key.minted"]
    )
    make_key(KeyKind.SECRET, project=project)
    make_key(KeyKind.SECRET, project=project)
    Event.objects.update(created_at=timezone.now() - timedelta(minutes=3))

    waiting = metrics.queue_state()
    assert waiting.depth == 2
    assert 170 < waiting.oldest_age_seconds < 200
