"""The worker's daily housekeeping: old webhook events and finished task results go."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from apps.apikeys.keyformat import KeyKind
from apps.notifications import tasks
from apps.notifications.checks import LEAK_EVENTS_WITHIN
from apps.notifications.models import Schedule
from apps.webhooks import delivery
from apps.webhooks.delivery import EVENT_RETENTION, WEBHOOKLESS_EVENT_RETENTION, prune_events
from apps.webhooks.models import Delivery, DeliveryStatus, Event
from core.tasks import ABANDONED_AFTER, STALLED_AFTER, Abandoned
from tests.factories import make_key

pytestmark = pytest.mark.django_db


def event_aged(project, age: timedelta, status: str) -> Event:
    make_key(KeyKind.SECRET, project=project)
    event = Event.objects.latest("created_at")
    Event.objects.filter(pk=event.pk).update(created_at=timezone.now() - age)
    Delivery.objects.filter(event=event).update(status=status)
    return event


@pytest.mark.parametrize("batch", [1000, 1], ids=["one batch", "one event a batch"])
def test_events_past_retention_go_with_their_deliveries(
    make_webhook, receiver, project, monkeypatch, batch
):
    monkeypatch.setattr(delivery, "PRUNE_BATCH", batch)
    make_webhook(receiver.url)
    old = EVENT_RETENTION + timedelta(hours=1)
    gone = event_aged(project, old, DeliveryStatus.DELIVERED)
    gone_failed = event_aged(project, old, DeliveryStatus.FAILED)
    still_pending = event_aged(project, old, DeliveryStatus.PENDING)
    recent = event_aged(project, EVENT_RETENTION - timedelta(hours=1), DeliveryStatus.DELIVERED)

    assert prune_events() == 2

    assert set(Event.objects.values_list("pk", flat=True)) == {still_pending.pk, recent.pk}
    assert not Delivery.objects.filter(event_id__in=[gone.pk, gone_failed.pk]).exists()
    assert Delivery.objects.filter(event=still_pending).exists()
    assert prune_events() == 0  # repeatable


def test_events_no_webhook_took_go_after_the_leak_emails_look_back(project):
    """Found by a privacy audit: every key change of an organization without webhooks left
    an event (the key object: its creator's email, last IP and user agent) for 30 days."""
    event_aged(project, WEBHOOKLESS_EVENT_RETENTION + timedelta(hours=1), "")
    recent = event_aged(project, WEBHOOKLESS_EVENT_RETENTION - timedelta(hours=1), "")
    assert not Delivery.objects.exists()

    assert prune_events() == 1

    assert list(Event.objects.values_list("pk", flat=True)) == [recent.pk]
    assert LEAK_EVENTS_WITHIN <= WEBHOOKLESS_EVENT_RETENTION  # what the emails read is kept


def test_an_event_waiting_for_its_fan_out_is_kept(make_webhook, receiver, project):
    """Found by a review: an event whose deliveries a queued task makes (the scheduled
    checks', a leak report's) has none until it runs; a worker back after two days ran
    the housekeeping first and deleted it as one no webhook took."""
    make_webhook(receiver.url)
    waiting = event_aged(project, WEBHOOKLESS_EVENT_RETENTION + timedelta(hours=1), "delivered")
    Delivery.objects.filter(event=waiting).delete()  # its fan-out not run yet

    assert prune_events() == 0

    assert Event.objects.filter(pk=waiting.pk).exists()


def finished_task_result(age: timedelta) -> DBTaskResult:
    result = DBTaskResult.objects.get(pk=tasks.copy_usage.enqueue().id)
    DBTaskResult.objects.filter(pk=result.pk).update(
        status="SUCCESSFUL", finished_at=timezone.now() - age
    )
    return result


def test_housekeeping_prunes_events_and_week_old_task_results(make_webhook, receiver, project):
    make_webhook(receiver.url)
    event_aged(project, EVENT_RETENTION + timedelta(days=1), DeliveryStatus.DELIVERED)
    week = timedelta(days=tasks.TASK_RESULTS_KEPT_DAYS)
    old_result = finished_task_result(week + timedelta(hours=1))
    kept_result = finished_task_result(week - timedelta(hours=1))
    waiting = DBTaskResult.objects.get(pk=tasks.copy_usage.enqueue().id)

    assert tasks.housekeeping.call().startswith("pruned 1 old webhook event(s)")

    remaining = set(DBTaskResult.objects.values_list("pk", flat=True))
    assert old_result.pk not in remaining
    assert {kept_result.pk, waiting.pk} <= remaining


def test_housekeeping_records_runs_abandoned_for_a_day_as_failed_then_prunes_them():
    """Found by an audit: a run whose worker was killed (a delivery, the urgent checks)
    stayed RUNNING for good, with its arguments, past every pruning."""
    abandoned, recent = (
        DBTaskResult.objects.get(pk=tasks.urgent_checks.enqueue().id) for _ in range(2)
    )
    ages = ((abandoned, ABANDONED_AFTER + timedelta(minutes=1)), (recent, STALLED_AFTER))
    for result, age in ages:
        DBTaskResult.objects.filter(pk=result.pk).update(
            status="RUNNING", started_at=timezone.now() - age
        )

    tasks.housekeeping.call()

    abandoned.refresh_from_db()
    assert abandoned.status == "FAILED"
    assert abandoned.task_result.errors[0].exception_class is Abandoned  # as the admin reads it
    assert DBTaskResult.objects.get(pk=recent.pk).status == "RUNNING"
    DBTaskResult.objects.filter(pk=abandoned.pk).update(
        finished_at=timezone.now() - timedelta(days=tasks.TASK_RESULTS_KEPT_DAYS, hours=1)
    )
    tasks.housekeeping.call()
    assert not DBTaskResult.objects.filter(pk=abandoned.pk).exists()


def test_housekeeping_is_queued_once_a_day_across_workers():
    now = timezone.now()
    assert "housekeeping" in tasks.enqueue_due(now)
    assert "housekeeping" not in tasks.enqueue_due(now + timedelta(hours=23))
    assert "housekeeping" in tasks.enqueue_due(now + timedelta(days=1, seconds=1))
    assert Schedule.objects.get(name="housekeeping").next_run_at > now + timedelta(days=1)
    queued = DBTaskResult.objects.filter(task_path="apps.notifications.tasks.housekeeping")
    assert queued.count() == 2


def test_cron_users_prune_with_the_housekeeping_command(owner, project):
    """A privacy audit: without a worker nothing pruned ended sessions (their IPs and user
    agents), finished invitations or old events; the command runs the worker's step once."""
    from io import StringIO

    from django.core.management import call_command

    from apps.accounts.models import AuthSession
    from apps.accounts.services import ENDED_SESSION_RETENTION, start_session

    old = event_aged(project, EVENT_RETENTION + timedelta(hours=1), DeliveryStatus.DELIVERED)
    start_session(owner)
    ended = timezone.now() - ENDED_SESSION_RETENTION - timedelta(hours=1)
    AuthSession.objects.filter(user=owner).update(ended_at=ended)
    out = StringIO()

    call_command("housekeeping", stdout=out)

    assert not Event.objects.filter(pk=old.pk).exists()
    assert not AuthSession.objects.filter(user=owner).exists()
    # Each number names what it counts (a commands audit: "pruned 0 webhook events and task
    # results older than 7 days" counted the events only).
    assert out.getvalue() == (
        "pruned 1 old webhook event(s) with their deliveries, 1 ended session(s) and 0 "
        "finished invitation(s); also task results older than 7 days and expired refresh "
        "tokens\n"
    )
