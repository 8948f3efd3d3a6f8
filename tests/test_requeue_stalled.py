"""`core.tasks.requeue_stalled` takes back the runs a worker of another release failed in a
few statements, however many there are: one UPDATE per wait, not one per row."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import F
from django.db.models.functions import Now
from django.test.utils import CaptureQueriesContext
from django_tasks import task
from django_tasks_db.models import DBTaskResult

from core.tasks import mismatch_delay, requeue_stalled

pytestmark = pytest.mark.django_db


@task()
def redo_me() -> None:
    raise AssertionError("never run here")


def failed_by_another_release(runs: int) -> DBTaskResult:
    """A run of `redo_me` failed `runs` times as a worker of another release fails it."""
    result = redo_me.enqueue()
    DBTaskResult.objects.filter(pk=result.id).update(
        status="FAILED",
        exception_class_path="builtins.TypeError",
        worker_ids=[f"old-{n}" for n in range(runs)],
        started_at=Now(),
        finished_at=Now(),
    )
    return DBTaskResult.objects.get(pk=result.id)


def lost_while_running() -> DBTaskResult:
    result = redo_me.enqueue()
    DBTaskResult.objects.filter(pk=result.id).update(
        status="RUNNING", worker_ids=["gone"], started_at=Now() - timedelta(hours=1)
    )
    return DBTaskResult.objects.get(pk=result.id)


def test_mismatched_runs_are_taken_back_with_one_update_per_wait():
    runs = [1, 1, 1, 2, 2, 3, 12, 20]  # 12 and 20 runs: both wait MISMATCH_MAX_DELAY
    mismatched = [failed_by_another_release(n) for n in runs]
    lost = lost_while_running()

    with CaptureQueriesContext(connection) as queries:
        requeued = requeue_stalled(redo_me, mismatched_within=timedelta(hours=1))

    assert requeued == len(runs) + 1
    updates = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    waits = {mismatch_delay(n) for n in runs}
    assert len(waits) == 4
    assert len(updates) == len(waits) + 1  # and one for the run lost while running
    waited = DBTaskResult.objects.annotate(wait=F("run_after") - Now())
    for row, n in zip(mismatched, runs, strict=True):
        row = waited.get(pk=row.pk)
        assert (row.status, row.started_at, row.finished_at) == ("READY", None, None)
        assert mismatch_delay(n) - timedelta(seconds=5) < row.wait <= mismatch_delay(n)
    lost = waited.get(pk=lost.pk)
    assert lost.status == "READY" and lost.wait <= timedelta(0)
