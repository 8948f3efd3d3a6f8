"""What a failed task keeps: its traceback, without the values of a row a database error
quoted (PostgreSQL's DETAIL: `Key (digest)=(…) already exists.`), as the log lines
(`core.logging.without_row_values`). django-tasks stores the whole traceback
(`DBTaskResult.set_failed`), shown in the admin and kept until housekeeping."""

from __future__ import annotations

from django_tasks import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from core.logging import without_row_values


def forget_row_values(sender, task_result, **kwargs) -> None:
    """django-tasks' `task_finished`: one UPDATE, only for a failure whose traceback
    quotes a row (none for any other task)."""
    if task_result.status != TaskResultStatus.FAILED or not task_result.errors:
        return
    stored = task_result.errors[-1].traceback
    written = without_row_values(stored)
    if written != stored:
        DBTaskResult.objects.filter(pk=task_result.id).update(traceback=written)
