"""What the worker's queue (django-tasks' database backend) lacks: taking back a task whose
worker stopped while running it."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone
from django_tasks import TaskResultStatus
from django_tasks_db.models import DBTaskResult


def requeue_stalled(task, *, after: timedelta, now: datetime | None = None) -> int:
    """Make `task`'s runs started more than `after` ago and not finished ready again: their
    worker was killed, or lost its database before it could record the end, and django-tasks
    leaves such a row RUNNING for good. The task must be safe to run twice. The number made
    ready."""
    now = now or timezone.now()
    with transaction.atomic():
        stalled = list(
            DBTaskResult.objects.select_for_update(skip_locked=True)
            .filter(
                task_path=task.module_path,
                status=TaskResultStatus.RUNNING,
                started_at__lt=now - after,
            )
            .values_list("pk", flat=True)
        )
        DBTaskResult.objects.filter(pk__in=stalled).update(
            status=TaskResultStatus.READY, run_after=now, started_at=None
        )
    return len(stalled)
