"""What the worker's queue (django-tasks' database backend) lacks: taking back a task whose
run was lost."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Now
from django_tasks import TaskResultStatus
from django_tasks_db.models import DBTaskResult

#: A task that takes seconds at most (a few EMAIL_TIMEOUTs, one fan-out): one started this
#: long ago and not finished lost its worker.
STALLED_AFTER = timedelta(minutes=10)


#: What django-tasks records when a worker of another release cannot run a task as it was
#: queued (a rolling deploy: the two releases' workers share the queue). The arguments are
#: not the shape its function takes (TypeError), or the task is not in that release under
#: that name (ImportError, ModuleNotFoundError; AttributeError for a name that moved).
DEPLOY_MISMATCH = (
    "builtins.TypeError",
    "builtins.ImportError",
    "builtins.ModuleNotFoundError",
    "builtins.AttributeError",
)
#: A mismatched run is made ready again this long after its first run, twice as long
#: after each next one (its runs: its row's `worker_ids`), up to `MISMATCH_MAX_DELAY`:
#: the deploy's old workers are gone within minutes, and a task that fails so for
#: another reason is run a few times in its window, not every sweep.
MISMATCH_FIRST_DELAY = timedelta(seconds=30)
MISMATCH_MAX_DELAY = timedelta(minutes=30)


def mismatch_delay(runs: int) -> timedelta:
    """How long a run that failed as a deploy mismatch waits after its `runs`-th run."""
    return min(MISMATCH_FIRST_DELAY * 2 ** max(0, min(runs, 20) - 1), MISMATCH_MAX_DELAY)


def requeue_stalled(
    task,
    *,
    after: timedelta = STALLED_AFTER,
    failed_within: timedelta | None = None,
    mismatched_within: timedelta | None = None,
) -> int:
    """Make `task`'s runs started more than `after` ago and not finished ready again: their
    worker was killed, or lost its database before it could record the end, and django-tasks
    leaves such a row RUNNING for good. With `failed_within`, its runs that raised (a
    deadlock, a timeout, a worker's second SIGTERM) and were first queued within that time
    too: django-tasks records them FAILED, for good (one failing every time is given up
    once its first queuing is that old). With `mismatched_within`, only its runs that failed
    as a worker of another release fails them (`DEPLOY_MISMATCH`) and were first queued
    within that time, each after `mismatch_delay` (found by a rolling-deploy audit: a reset
    ask queued by the new release and run by the old one's worker ended FAILED with a
    TypeError, and was forgotten with the link the user was told was sent). The task must
    be safe to run again. Times are the database's, one clock for every worker. The number
    made ready."""
    lost = Q(status=TaskResultStatus.RUNNING, started_at__lt=Now() - after)
    if failed_within is not None:
        lost |= Q(status=TaskResultStatus.FAILED, enqueued_at__gte=Now() - failed_within)
    mismatched = Q(status=TaskResultStatus.FAILED, exception_class_path__in=DEPLOY_MISMATCH)
    if mismatched_within is not None:
        lost |= mismatched & Q(enqueued_at__gte=Now() - mismatched_within)
    again = {"status": TaskResultStatus.READY, "started_at": None, "finished_at": None}
    with transaction.atomic():
        stalled = list(
            DBTaskResult.objects.select_for_update(skip_locked=True)
            .filter(lost, task_path=task.module_path)
            .values_list("pk", "status", "worker_ids")
        )
        by_wait: dict[timedelta, list] = defaultdict(list)
        for pk, status, worker_ids in stalled:
            if failed_within or status != TaskResultStatus.FAILED:
                by_wait[timedelta(0)].append(pk)
            else:  # a deploy mismatch, after its wait
                by_wait[mismatch_delay(len(worker_ids or ()))].append(pk)
        # One UPDATE per wait, not per row (a sweep after a deploy finds many).
        for wait, pks in by_wait.items():
            run_after = Now() + wait if wait else Now()
            DBTaskResult.objects.filter(pk__in=pks).update(**again, run_after=run_after)
    return len(stalled)


#: Longer than any task's run and any `requeue_stalled` wait: a run started this long ago
#: and still RUNNING will never be finished or taken back.
ABANDONED_AFTER = timedelta(days=1)


class Abandoned(Exception):
    """What `fail_abandoned` records as a run's error: its worker stopped during it."""


def fail_abandoned(*, after: timedelta = ABANDONED_AFTER) -> int:
    """Record as FAILED every task run still RUNNING `after` its start. Its worker was killed
    or lost its database mid-run, and a task nothing takes back (`requeue_stalled`: what it
    did is redone another way, as a delivery's own row schedules its next try) stayed
    RUNNING for good, past the pruning of finished results, with its arguments. The number
    recorded; the daily housekeeping runs it before pruning."""
    return DBTaskResult.objects.filter(
        status=TaskResultStatus.RUNNING, started_at__lt=Now() - after
    ).update(
        status=TaskResultStatus.FAILED,
        finished_at=Now(),
        exception_class_path=f"{Abandoned.__module__}.{Abandoned.__qualname__}",
        traceback="The worker stopped during the run; nothing finished or took it back.",
    )
