"""The worker looks at its schedules between tasks, not after a round of them.

Deliveries to slow endpoints take up to 10 s each; looked at only every 20 tasks, the
urgent checks (leak-report emails within a minute, SPEC §4.11) waited behind 20 of
them, about 200 s, whatever their priority, since they were not queued yet.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import time_machine
from django.core.management import call_command
from django.db.models.functions import Now
from django_tasks_db.models import DBTaskResult

from apps.apikeys.keyformat import KeyKind
from apps.notifications import tasks
from apps.notifications.models import Schedule
from apps.webhooks.delivery import deliver_webhook
from tests.factories import make_key

pytestmark = pytest.mark.django_db(transaction=True)


def test_urgent_checks_due_during_a_slow_delivery_run_before_the_next_one(
    make_webhook, receiver, project
):
    receiver.delay = 1.0  # each delivery takes a second
    for _ in range(3):
        make_webhook(receiver.url, events=["key.minted"])
    make_key(KeyKind.SECRET, project=project)  # three deliveries queued
    for name, _every, _job in tasks.schedules(tasks.CHECKS_EVERY, tasks.URGENT_EVERY):
        Schedule.objects.create(name=name, next_run_at=Now() + timedelta(hours=1))
    # due while the first delivery waits on its endpoint (schedules run on the database's clock)
    Schedule.objects.filter(name="notifications.urgent").update(
        next_run_at=Now() + timedelta(seconds=0.5)
    )

    call_command("run_worker", "--once")

    assert len(receiver.requests) == 3
    urgent = DBTaskResult.objects.get(task_path=tasks.urgent_checks.module_path)
    delivered = DBTaskResult.objects.filter(task_path=deliver_webhook.module_path)
    starts = sorted(delivered.values_list("started_at", flat=True))
    assert starts[0] < urgent.started_at < starts[1]


def test_a_worker_whose_clock_runs_ahead_does_not_hold_the_schedules_back():
    """Each run's next time is the database's clock plus the interval, whatever the worker's
    own clock says: one worker clocked 92 days ahead once pushed every schedule 92 days into
    the future, and the others, on time, skipped the checks until then."""
    every = {"checks_every": tasks.CHECKS_EVERY, "urgent_every": timedelta(seconds=1)}
    tasks.enqueue_due(**every)  # creates the schedules and runs each once
    Schedule.objects.update(next_run_at=Now() - timedelta(seconds=1))  # all due

    with time_machine.travel(timedelta(days=92)):
        assert len(tasks.enqueue_due(**every)) == 4  # the worker ahead of time claims the runs

    latest = Now() + tasks.HOUSEKEEPING_EVERY + timedelta(minutes=1)  # the database's time
    assert not Schedule.objects.filter(next_run_at__gt=latest).exists()
    time.sleep(1.1)
    assert tasks.enqueue_due(**every) == ["notifications.urgent"]  # on time for the others
