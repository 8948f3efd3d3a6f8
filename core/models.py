"""The core's one table: counters that several processes add to and /metrics reads."""

from __future__ import annotations

from django.db import models


class WorkerCounter(models.Model):
    """A monotonic count kept in the database (`core.counters`), because the process that
    counts (a worker, on any host) is not the one a scrape of /metrics reaches."""

    name = models.CharField(max_length=64, primary_key=True)
    value = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name} = {self.value}"
