"""Numbers about outbound delivery, for /metrics (SPEC §4.14).

`queue_depth()` and `oldest_undelivered_age_seconds()` are read on demand;
`count_delivery_failure()` is the one place a failed webhook attempt is counted,
so a Prometheus counter can be attached here later without touching callers.
"""

from __future__ import annotations

import logging
from collections import Counter

from django.db.models import Min
from django.utils import timezone

from apps.webhooks.models import Delivery, DeliveryStatus

logger = logging.getLogger("sigsentry.webhooks")

#: Failed attempts in this process, by reason ("http 500", "timeout", ...).
delivery_failures: Counter[str] = Counter()


def count_delivery_failure(reason: str) -> None:
    delivery_failures[reason] += 1


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
