"""Numbers about outbound delivery, for /metrics (SPEC §4.14).

`queue_depth()` and `oldest_undelivered_age_seconds()` are read on demand (the
app registers them as the `webhooks` queue's probe, `queue_state`);
`count_delivery_failure()` is the one place a failed webhook attempt is counted:
in this process by reason, and in the database for /metrics (the worker that
fails is not the process a scrape reaches).
"""

from __future__ import annotations

import logging
from collections import Counter

from django.db.models import Min
from django.utils import timezone

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
    depth = queue_depth()
    return metrics.QueueState(depth, oldest_undelivered_age_seconds() if depth else None)


def queue_depth() -> int:
    """Deliveries not yet made (waiting for their first attempt or a retry)."""
    return Delivery.objects.filter(status=DeliveryStatus.PENDING).count()


def oldest_undelivered_age_seconds() -> float:
    """Age of the oldest event with a pending delivery; 0 when nothing waits."""
    oldest = Delivery.objects.filter(status=DeliveryStatus.PENDING).aggregate(
        oldest=Min("event__created_at")
    )["oldest"]
    if oldest is None:
        return 0.0
    return max(0.0, (timezone.now() - oldest).total_seconds())
