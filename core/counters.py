"""Counters in the database, for what the worker counts and /metrics reports.

A worker process is not scraped (it may not even run on the web server's host), so
its failures are added to a row of `WorkerCounter`, in the transaction that records
the failure, and every web process reads the rows at scrape time
(`core.metrics.DatabaseFiguresCollector`).
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.db.models import F

from core.models import WorkerCounter


def add(name: str, amount: int = 1) -> None:
    """Add `amount` to the counter `name` (created at its first use)."""
    for _attempt in range(2):
        if WorkerCounter.objects.filter(name=name).update(value=F("value") + amount):
            return
        try:
            with transaction.atomic():
                WorkerCounter.objects.create(name=name, value=amount)
            return
        except IntegrityError:
            if not WorkerCounter.objects.filter(name=name).exists():
                raise  # another broken constraint: the count would be lost silently
            continue  # created meanwhile by another process: add to it instead


def values() -> dict[str, int]:
    return dict(WorkerCounter.objects.values_list("name", "value"))
