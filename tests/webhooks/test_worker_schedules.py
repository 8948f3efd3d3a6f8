"""The worker looks at its schedules between tasks, not after a round of them.

Deliveries to slow endpoints take up to 10 s each; looked at only every 20 tasks, the
urgent checks (leak-report emails within a minute, SPEC §4.11) waited behind 20 of
them, about 200 s, whatever their priority, since they were not queued yet.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
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
    now = timezone.now()
    for name, _every, _job in tasks.schedules(tasks.CHECKS_EVERY, tasks.URGENT_EVERY):
        Schedule.objects.create(name=name, next_run_at=now + timedelta(hours=1))
    # due while the first delivery waits on its endpoint
    Schedule.objects.filter(name="notifications.urgent").update(
        next_run_at=now + timedelta(seconds=0.5)
    )

    call_command("run_worker", "--once")

    assert len(receiver.requests) == 3
    urgent = DBTaskResult.objects.get(task_path=tasks.urgent_checks.module_path)
    delivered = DBTaskResult.objects.filter(task_path=deliver_webhook.module_path)
    starts = sorted(delivered.values_list("started_at", flat=True))
    assert starts[0] < urgent.started_at < starts[1]
