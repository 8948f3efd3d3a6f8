"""The sweep that queues lost deliveries again never undoes a worker's backoff.

`requeue_overdue` listed the overdue deliveries, then set them due now in another
statement: a worker that recorded a failed attempt (and its backoff) in between had
its delay overwritten, and the delivery was tried again at once.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from apps.apikeys.keyformat import KeyKind
from apps.webhooks import delivery as deliveries
from apps.webhooks.models import Delivery
from tests.factories import make_key
from tests.webhooks.test_concurrent_delete import in_another_transaction

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _concurrent_database():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL's row locks and concurrent connections")


def test_a_backoff_recorded_during_the_sweep_stands(make_webhook, project):
    make_webhook("https://127.0.0.1:9/hook")
    make_key(KeyKind.SECRET, project=project)
    [delivery] = Delivery.objects.all()
    Delivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=timezone.now() - timedelta(minutes=10)
    )
    backoff = timezone.now() + timedelta(seconds=40)
    # a worker recording a failed attempt: its transaction still open during the sweep
    recording = in_another_transaction(
        lambda: Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=backoff),
        threading.Event(),
    )

    queued = deliveries.requeue_overdue()

    recording.join()
    assert recording.errors == []
    assert queued == 0  # the worker has it
    delivery.refresh_from_db()
    assert delivery.next_attempt_at == backoff
