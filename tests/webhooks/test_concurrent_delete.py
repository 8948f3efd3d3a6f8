"""A webhook deleted while a key changes: neither the key change nor the delete fails.

A key change writes its event's deliveries in its own transaction (the outbox); a
webhook deleted between its read and its commit made the delivery point at a deleted
row, and PostgreSQL's foreign-key check failed the whole transaction at commit: the
revocation answered 500 and the key stayed active. Each side now locks the webhook
row (apps.webhooks.services).
"""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, connections, transaction

from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from apps.apikeys.services import revoke_key
from apps.webhooks import services
from apps.webhooks.models import Delivery, Webhook
from tests.factories import make_key

pytestmark = pytest.mark.django_db(transaction=True)

HOLD_SECONDS = 1.0


@pytest.fixture(autouse=True)
def _concurrent_database():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL's row locks and concurrent connections")


def in_another_transaction(work, started: threading.Event) -> threading.Thread:
    """Run `work` in a transaction of another connection, held open HOLD_SECONDS after it."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with transaction.atomic():
                work()
                started.set()
                time.sleep(HOLD_SECONDS)
        except BaseException as exc:  # reported by the test
            errors.append(exc)
            started.set()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.errors = errors
    thread.start()
    assert started.wait(10)
    return thread


def test_a_revocation_while_the_webhook_is_deleted_revokes(make_webhook, owner, project):
    webhook = make_webhook("https://127.0.0.1:9/hook").webhook
    api_key, _plaintext = make_key(KeyKind.SECRET, project=project)
    deleting = in_another_transaction(
        lambda: services.delete_webhook(actor=owner, webhook=webhook), threading.Event()
    )

    revoke_key(actor=owner, api_key=api_key)  # reads the webhook while its delete is open

    deleting.join()
    assert deleting.errors == []
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at is not None
    assert not Webhook.objects.filter(pk=webhook.pk).exists()
    assert not Delivery.objects.filter(webhook_id=webhook.pk).exists()


def test_a_delete_while_a_key_event_is_being_recorded_deletes_its_delivery_too(
    make_webhook, owner, project
):
    webhook = make_webhook("https://127.0.0.1:9/hook").webhook
    api_key, _plaintext = make_key(KeyKind.SECRET, project=project)
    revoking = in_another_transaction(
        lambda: revoke_key(actor=owner, api_key=api_key), threading.Event()
    )

    services.delete_webhook(actor=owner, webhook=webhook)  # while the revocation is open

    revoking.join()
    assert revoking.errors == []
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at is not None
    assert not Webhook.objects.filter(pk=webhook.pk).exists()
    assert not Delivery.objects.filter(webhook_id=webhook.pk).exists()
