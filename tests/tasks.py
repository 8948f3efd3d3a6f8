"""Queued tasks run in the test's process, as `run_worker` runs them (django-tasks' worker)."""

from __future__ import annotations

from django_tasks_db.models import DBTaskResult

from apps.notifications.management.commands.run_worker import task_worker


def run_ready_tasks() -> None:
    """Claim and run every task that is ready now, in order, with the worker's own
    `run_task`. Not its loop: that closes the connection between tasks, ending the test's
    transaction (and it would set this process's signal handlers)."""
    worker = task_worker("tests", max_tasks=None)
    while (result := DBTaskResult.objects.ready().get_locked()) is not None:
        result.claim(worker.worker_id)
        worker.run_task(result)
