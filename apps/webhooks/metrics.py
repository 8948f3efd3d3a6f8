"""Numbers about outbound delivery, for /metrics (SPEC §4.14).

`queue_state()` (the `webhooks` queue's probe, registered by the app; one query) is
read on demand;
`count_delivery_failure()` is the one place a failed webhook attempt is counted:
in this process by reason, and in the database for /metrics (the worker that
fails is not the process a scrape reaches).
"""

from __future__ import annotations

import logging
from collections import Counter

from apps.webhooks.models import Delivery, DeliveryStatus
from core import metrics

logger = logging.getLogger("sigsentry.webhooks")

#: Failed attempts in this process, by reason ("http 500", "timeout", ...).
delivery_failures: Counter[str] = Counter()


def count_delivery_failure(reason: str) -> None:
    """Call it in the transaction that records the failed attempt."""
    delivery_failures[reason] += 1
    metrics.record_delivery_failure()


def queue_state() -> metrics.QueueState:
    """The `webhooks` queue: deliveries not yet made, and the age of the oldest one's event."""
    pending = Delivery.objects.filter(status=DeliveryStatus.PENDING)
    return metrics.queue_state_of(pending, "event__created_at")
