"""The worker's periodic jobs: queued tasks, claimed once per run by one worker.

`enqueue_due` is called by every `run_worker` loop. Each schedule is one row
whose `next_run_at` a conditional UPDATE moves forward: the worker whose UPDATE
changed the row queues the run (in the same transaction), the others do nothing.
The time is the database's, one clock for every worker: a worker whose own clock
ran ahead would otherwise push `next_run_at` into its future, and every other
worker would skip the job until then.
Running the job as a task means SIGTERM lets it finish, like any other task.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.db.models.functions import Now
from django_tasks import task

from apps.accounts.mail import requeue_stalled_retries
from apps.accounts.password_reset import forget_finished_reset_asks
from apps.accounts.services import prune_ended_sessions
from apps.apikeys.usage.flush import (
    flush_usage,
    fold_idle_keys,
    forget_old_last_use,
    prune_usage,
)
from apps.invitations.services import prune_finished_invitations
from apps.notifications import checks
from apps.notifications.models import Schedule
from apps.webhooks.delivery import prune_events, requeue_overdue
from apps.webhooks.services import requeue_stalled_fan_outs
from core import metrics
from core.tasks import fail_abandoned

logger = logging.getLogger("sigsentry.notifications")

#: Expiry, unused and legacy checks (SPEC §4.11: every 5 minutes).
CHECKS_EVERY = timedelta(minutes=5)
#: Leak-report and disabled-webhook emails must go out within a minute.
URGENT_EVERY = timedelta(seconds=15)


#: Key usage counters copied to the database (SPEC §4.9: a Redis restart loses nothing
#: older than a minute).
USAGE_EVERY = timedelta(seconds=30)


#: Old webhook events, finished task results, ended sessions, expired refresh-token
#: records and finished invitations are deleted once a day.
HOUSEKEEPING_EVERY = timedelta(days=1)
TASK_RESULTS_KEPT_DAYS = 7

#: Ahead of webhook deliveries, so a delivery backlog does not hold up emails.
PRIORITY = 10


@task(priority=PRIORITY)
def scheduled_checks() -> str:
    report = checks.run_all_checks()
    requeued = requeue_overdue()
    if requeued:
        logger.warning("requeued %d overdue webhook deliveries", requeued)
    requeue_stalled_retries()  # account emails whose worker died mid-try
    requeue_stalled_fan_outs()  # webhook deliveries of leak reports, likewise
    return str(report)


@task(priority=PRIORITY)
def urgent_checks() -> str:
    forget_finished_reset_asks()
    return str(checks.run_urgent_checks())


@task(priority=PRIORITY)
def copy_usage() -> str:
    copied = flush_usage(wait=False)  # None: a web process was copying; the next run copies
    copied_text = "no (another copy was running)" if copied is None else str(copied)
    return f"copied {copied_text} counters, pruned {prune_usage()} rows"


@task(priority=PRIORITY)
def housekeeping() -> str:
    """Without it the event and task tables grow by every delivery and every scheduled run
    (about 9,000 task rows a day from the schedules alone), and sessions (with the IP and
    user agent of each login), refresh-token records (one per login and refresh) and
    invitations (with the invitee's address) are kept for ever."""
    events = prune_events()
    fail_abandoned()  # runs whose worker died: finished, so pruned like the others
    call_command(
        "prune_db_task_results", "--min-age-days", str(TASK_RESULTS_KEPT_DAYS), verbosity=0
    )
    sessions = prune_ended_sessions()
    # simplejwt's: expired refresh-token records and their blacklist rows. A token past
    # its `exp` is refused before its record is ever looked up.
    call_command("flushexpiredtokens", verbosity=0)
    invitations = prune_finished_invitations()
    forget_old_last_use()
    fold_idle_keys()
    checks.forget_given_up_recipients()
    # Each number next to what it counts; the two library commands give no count (a
    # commands audit: "0 webhook events and task results" read as counting both).
    return (
        f"pruned {events} old webhook event(s) with their deliveries, {sessions} ended "
        f"session(s) and {invitations} finished invitation(s); also task results older than "
        f"{TASK_RESULTS_KEPT_DAYS} days and expired refresh tokens"
    )


def schedules(checks_every: timedelta, urgent_every: timedelta):
    return (
        ("notifications.checks", checks_every, scheduled_checks),
        ("notifications.urgent", urgent_every, urgent_checks),
        ("usage.copy", USAGE_EVERY, copy_usage),
        ("housekeeping", HOUSEKEEPING_EVERY, housekeeping),
    )


def schedule_queue_state() -> metrics.QueueState:
    """/metrics, queue `schedules`: the periodic checks whose time has come that no worker
    has queued yet, aged from when the first came due. A running worker queues each within
    about a second (`run_worker`), so an age that keeps growing says no worker runs, or
    every one is stuck in a task: the queues of deliveries and emails cannot say it, their
    items wait for their next try even with a healthy worker (found by an audit). Rows
    exist once a worker has run."""
    return metrics.queue_state_of(Schedule.objects.filter(next_run_at__lte=Now()), "next_run_at")


def enqueue_due(
    now: datetime | None = None,
    *,
    checks_every: timedelta = CHECKS_EVERY,
    urgent_every: timedelta = URGENT_EVERY,
) -> list[str]:
    """Queue each schedule whose time has come, once across all workers; names queued.

    `now` is the database's clock unless a caller (a test) names a time.
    """
    clock = Now() if now is None else now
    queued = []
    for name, every, job in schedules(checks_every, urgent_every):
        try:
            with transaction.atomic():
                Schedule.objects.get_or_create(name=name, defaults={"next_run_at": clock})
        except IntegrityError:
            if not Schedule.objects.filter(name=name).exists():
                raise  # not another worker's row: a broken constraint, never queued otherwise
            # another worker created it at the same moment
        with transaction.atomic():
            if Schedule.objects.filter(name=name, next_run_at__lte=clock).update(
                next_run_at=clock + every
            ):
                job.enqueue()
                queued.append(name)
    return queued
