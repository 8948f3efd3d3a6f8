"""A leak report's webhook deliveries are made by the worker (SPEC §4.7: the answer never
tells whether a key existed).

An audit timed the public report from sending to the connection's close: in an organization
with 20 webhooks, 10 existing keys took 226-304 ms, 10 unknown ones 152-155 (the padding),
and 20 existing keys 412-654: one attempt was queued per key and webhook in the request.
Now the request records the events and one task; the worker makes the deliveries."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import OperationalError, connection
from django.db.models.functions import Now
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from apps.apikeys.keyformat import KeyKind
from apps.apikeys.leaks import report_leaked_keys
from apps.webhooks import services
from apps.webhooks.delivery import RETRY_FOR
from apps.webhooks.models import Delivery, DeliveryStatus, Event
from apps.webhooks.services import fan_out_events, requeue_stalled_fan_outs
from core.tasks import STALLED_AFTER
from tests.factories import make_key
from tests.tasks import run_ready_tasks

pytestmark = pytest.mark.django_db


def queries_of_a_report(keys: list[str]) -> int:
    with CaptureQueriesContext(connection) as queries:
        report_leaked_keys(candidates=keys)
    return len(queries)


def test_a_reports_queries_do_not_grow_with_its_keys_or_the_webhooks(make_webhook, project):
    one = [make_key(KeyKind.SECRET, project=project)[1]]
    before_webhooks = queries_of_a_report(one)
    for n in range(20):
        make_webhook(f"http://127.0.0.1:9/hook-{n}")
    with_webhooks = queries_of_a_report([make_key(KeyKind.SECRET, project=project)[1]])
    ten = queries_of_a_report([make_key(KeyKind.SECRET, project=project)[1] for _ in range(10)])

    assert before_webhooks == with_webhooks == ten
    assert Event.objects.count() == 12 + 12  # each key's mint, then its revocation
    assert not Delivery.objects.filter(event__type="key.revoked_by_leak_report").exists()
    assert DBTaskResult.objects.filter(task_path=fan_out_events.module_path).count() == 3


def test_the_worker_delivers_a_reports_events_to_every_webhook(make_webhook, receiver, project):
    for _ in range(3):
        make_webhook(receiver.url, events=["key.revoked_by_leak_report"])
    keys = [make_key(KeyKind.SECRET, project=project)[1] for _ in range(4)]

    report_leaked_keys(candidates=keys)
    run_ready_tasks()  # the fan-out, then the attempts it queued

    assert len(receiver.requests) == 12
    assert Delivery.objects.filter(status=DeliveryStatus.DELIVERED).count() == 12


def test_a_fan_out_run_again_makes_no_delivery_twice(make_webhook, project):
    make_webhook("http://127.0.0.1:9/hook", events=["key.revoked_by_leak_report"])
    report_leaked_keys(candidates=[make_key(KeyKind.SECRET, project=project)[1]])
    [queued] = DBTaskResult.objects.filter(task_path=fan_out_events.module_path)
    event_ids = queued.args_kwargs["args"][0]

    fan_out_events.call(event_ids)
    fan_out_events.call(event_ids)  # as after a worker stopped between its commit and its end

    assert Delivery.objects.count() == 1


def test_a_fan_out_whose_worker_stopped_is_ready_again(make_webhook, project):
    make_webhook("http://127.0.0.1:9/hook", events=["key.revoked_by_leak_report"])
    report_leaked_keys(candidates=[make_key(KeyKind.SECRET, project=project)[1]])
    fan_outs = DBTaskResult.objects.filter(task_path=fan_out_events.module_path)
    started = timezone.now() - STALLED_AFTER - timedelta(seconds=1)
    fan_outs.update(status="RUNNING", started_at=started)

    assert requeue_stalled_fan_outs() == 1
    assert fan_outs.get().status == "READY"
    run_ready_tasks()
    assert Delivery.objects.count() == 1


def test_an_event_fanned_out_at_once_reads_no_deliveries_first(make_webhook, project):
    """Only a fan-out run by the worker may find some made already; a mint's does not ask."""
    make_webhook("http://127.0.0.1:9/hook", events=["key.minted"])
    with CaptureQueriesContext(connection) as queries:
        make_key(KeyKind.SECRET, project=project)

    made_already = [
        q["sql"]
        for q in queries
        if q["sql"].startswith("SELECT") and '"webhooks_delivery"."event_id" IN' in q["sql"]
    ]
    assert made_already == []
    assert Delivery.objects.count() == 1


@pytest.mark.parametrize("stop", [OperationalError("deadlock detected"), SystemExit(1)])
def test_a_fan_out_that_failed_is_run_again_by_the_checks(make_webhook, project, monkeypatch, stop):
    """Found by a review: django-tasks records a task that raised (a deadlock, a timeout, a
    worker's second SIGTERM inside it) FAILED for good, and its events were never
    delivered. The five-minute checks now make it ready again."""
    make_webhook("http://127.0.0.1:9/hook", events=["key.revoked_by_leak_report"])
    report_leaked_keys(candidates=[make_key(KeyKind.SECRET, project=project)[1]])
    fan_out = services._fan_out

    def failing_once(*args, **kwargs):
        monkeypatch.setattr(services, "_fan_out", fan_out)
        raise stop

    monkeypatch.setattr(services, "_fan_out", failing_once)
    run_ready_tasks()
    fan_outs = DBTaskResult.objects.filter(task_path=fan_out_events.module_path)
    assert fan_outs.get().status == "FAILED" and Delivery.objects.count() == 0

    assert requeue_stalled_fan_outs() == 1
    run_ready_tasks()
    assert Delivery.objects.count() == 1
    assert fan_outs.get().status == "SUCCESSFUL"


def test_a_fan_out_failing_every_time_is_given_up_a_day_after_it_was_queued(make_webhook, project):
    """Each failure stamps a new end: counted from it, a broken fan-out would be run again
    every five minutes for ever. Counted from its first queuing, it stops after a day."""
    make_webhook("http://127.0.0.1:9/hook", events=["key.revoked_by_leak_report"])
    report_leaked_keys(candidates=[make_key(KeyKind.SECRET, project=project)[1]])
    fan_outs = DBTaskResult.objects.filter(task_path=fan_out_events.module_path)
    fan_outs.update(
        status="FAILED",
        enqueued_at=Now() - RETRY_FOR - timedelta(minutes=1),
        finished_at=Now(),
    )

    assert requeue_stalled_fan_outs() == 0
    assert fan_outs.get().status == "FAILED"
