"""A task a worker of another release cannot run (a rolling deploy: both releases' workers
share the queue) is taken back by this release, within its email's time, and sent once.

Found by a rolling-deploy audit: a reset ask queued by the new release with two arguments,
run by the old release's worker (whose `mail_reset_link(account)` took one), ended FAILED
with a TypeError; the urgent checks then deleted it, and the link the user was told was
sent was never sent. The old worker is staged here by giving the worker's own `run_task`
the old release's task under the queued name (or no task under it); the mail goes to the
real SMTP test server.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db.models import F
from django.db.models.functions import Now
from django.utils import timezone
from django_tasks import task
from django_tasks_db.models import DBTaskResult

from apps.accounts import mail, password_reset
from apps.notifications.tasks import urgent_checks
from core.tasks import MISMATCH_FIRST_DELAY, mismatch_delay
from tests.accounts.test_password_reset import RESET, confirm, token_from
from tests.tasks import run_ready_tasks

pytestmark = pytest.mark.django_db


@task(priority=mail.FIRST_TRY_PRIORITY)
def mail_reset_link_before(account: str) -> None:
    """The release before b371770's `mail_reset_link`: one argument."""
    raise AssertionError("an old worker never gets this far with a new ask")


@task(priority=mail.FIRST_TRY_PRIORITY)
def resend_email_before(kind: str, ids: dict) -> str:
    """A release whose `resend_email` took other arguments."""
    raise AssertionError("an old worker never gets this far with a new retry")


def run_on_an_old_worker(monkeypatch, name: str, module, old=None) -> None:
    """Run what is ready as a worker of the release before does: under `name` it finds
    `old` (a task of another shape), or nothing at all (a task that release lacks)."""
    if old is None:
        monkeypatch.delattr(module, name)
    else:
        monkeypatch.setattr(module, name, old)
    run_ready_tasks()
    monkeypatch.undo()


def later_than_its_wait(time_machine, row: DBTaskResult) -> None:
    time_machine.move_to(row.run_after + timedelta(seconds=1), tick=False)


def waited(row: DBTaskResult) -> timedelta:
    """How long `row` waits from now to be run, by the database's clock."""
    wait = F("run_after") - Now()
    return DBTaskResult.objects.filter(pk=row.pk).annotate(wait=wait).get().wait


def the_ask() -> DBTaskResult:
    return DBTaskResult.objects.get(task_path=password_reset.mail_reset_link.module_path)


@pytest.mark.parametrize(
    ("old", "error"),
    [(mail_reset_link_before, "builtins.TypeError"), (None, "builtins.ImportError")],
    ids=["other-arguments", "no-such-task"],
)
def test_a_reset_ask_an_old_worker_could_not_run_is_mailed_once_by_this_release(
    api_client, mailbox, owner, monkeypatch, time_machine, old, error
):
    time_machine.move_to(timezone.now(), tick=False)
    assert api_client.post(RESET, {"email": owner.email}, format="json").status_code == 202
    run_on_an_old_worker(monkeypatch, "mail_reset_link", password_reset, old)
    ask = the_ask()
    assert (ask.status, ask.exception_class_path) == ("FAILED", error)

    urgent_checks.call()  # the sweep every 15 s: taken back, not forgotten

    ask = the_ask()
    assert ask.status == "READY" and waited(ask) > MISMATCH_FIRST_DELAY - timedelta(seconds=5)
    run_ready_tasks()  # its wait: an old worker still about may not take it at once
    assert mailbox.messages() == []

    later_than_its_wait(time_machine, ask)
    run_ready_tasks()
    urgent_checks.call()
    run_ready_tasks()
    urgent_checks.call()

    [message] = mailbox.messages(owner.email)
    assert not DBTaskResult.objects.filter(task_path=ask.task_path).exists()  # then forgotten
    assert confirm(api_client, token_from(message)).status_code == 204


def test_an_ask_an_old_worker_keeps_failing_is_run_less_and_less_often(
    api_client, mailbox, owner, monkeypatch, time_machine
):
    """Bounded: a task that fails so for good (a bug, not a deploy) is not run every sweep,
    and not after its link's life."""
    time_machine.move_to(timezone.now(), tick=False)
    assert api_client.post(RESET, {"email": owner.email}, format="json").status_code == 202
    for runs in (1, 2, 3):
        run_on_an_old_worker(monkeypatch, "mail_reset_link", password_reset, mail_reset_link_before)
        urgent_checks.call()
        ask = the_ask()
        assert ask.status == "READY"
        wait = waited(ask)  # by the database's clock, which the test does not move
        assert mismatch_delay(runs) - timedelta(seconds=5) < wait <= mismatch_delay(runs)
        later_than_its_wait(time_machine, ask)
    assert mismatch_delay(1) < mismatch_delay(2) < mismatch_delay(3)
    assert len(ask.worker_ids) == 3

    run_on_an_old_worker(monkeypatch, "mail_reset_link", password_reset, mail_reset_link_before)
    DBTaskResult.objects.filter(pk=ask.pk).update(enqueued_at=Now() - timedelta(hours=2))
    urgent_checks.call()  # past the link's life: forgotten

    assert not DBTaskResult.objects.filter(pk=ask.pk).exists()
    assert mailbox.messages() == []


@pytest.mark.parametrize(
    "error", ["django.db.utils.OperationalError", "smtplib.SMTPServerDisconnected"]
)
def test_an_ask_that_failed_for_another_reason_is_forgotten_not_run_again(
    api_client, mailbox, owner, error
):
    assert api_client.post(RESET, {"email": owner.email}, format="json").status_code == 202
    DBTaskResult.objects.update(status="FAILED", exception_class_path=error, finished_at=Now())

    urgent_checks.call()

    assert not DBTaskResult.objects.exists()
    run_ready_tasks()
    assert mailbox.messages() == []


def queue_a_retry(owner) -> DBTaskResult:
    since = timezone.now().isoformat()
    result = mail.resend_email.enqueue("password_changed", {"user_id": str(owner.pk)}, 1, since)
    # {"user_id", "when", "ip"}: what the password-changed notice is built again from
    DBTaskResult.objects.filter(pk=result.id).update(
        args_kwargs={
            "args": [
                "password_changed",
                {"user_id": str(owner.pk), "when": since, "ip": "203.0.113.9"},
                1,
                since,
            ],
            "kwargs": {},
        }
    )
    return DBTaskResult.objects.get(pk=result.id)


@pytest.mark.parametrize(
    "old", [resend_email_before, None], ids=["other-arguments", "no-such-task"]
)
def test_an_email_retry_an_old_worker_could_not_run_is_sent_once_by_this_release(
    mailbox, owner, monkeypatch, time_machine, old
):
    time_machine.move_to(timezone.now(), tick=False)
    retry = queue_a_retry(owner)
    run_on_an_old_worker(monkeypatch, "resend_email", mail, old)
    assert DBTaskResult.objects.get(pk=retry.pk).status == "FAILED"

    assert mail.requeue_stalled_retries() == 1  # the scheduled checks, every 5 minutes

    retry = DBTaskResult.objects.get(pk=retry.pk)
    assert retry.status == "READY"
    later_than_its_wait(time_machine, retry)
    run_ready_tasks()
    assert mail.requeue_stalled_retries() == 0

    assert DBTaskResult.objects.get(pk=retry.pk).return_value == "sent"
    assert len(mailbox.messages(owner.email)) == 1


def test_an_email_retry_failed_otherwise_or_past_its_time_is_not_run_again(mailbox, owner):
    otherwise, too_late = queue_a_retry(owner), queue_a_retry(owner)
    DBTaskResult.objects.filter(pk=otherwise.pk).update(
        status="FAILED", exception_class_path="builtins.RuntimeError"
    )
    DBTaskResult.objects.filter(pk=too_late.pk).update(
        status="FAILED",
        exception_class_path="builtins.TypeError",
        enqueued_at=Now() - timedelta(days=8),  # longer than any email is tried (7 days)
    )

    assert mail.requeue_stalled_retries() == 0

    assert set(DBTaskResult.objects.values_list("status", flat=True)) == {"FAILED"}
    run_ready_tasks()
    assert mailbox.messages() == []


def test_this_releases_tasks_take_a_keyword_a_later_release_adds(mailbox, owner):
    """The rule (README, rolling deploys): arguments only grow, by keyword, with a default;
    a worker of this release runs a task a later one queued with one it does not know."""
    password_reset.mail_reset_link.enqueue(owner.email, timezone.now().isoformat(), language="fr")
    retry = queue_a_retry(owner)
    DBTaskResult.objects.filter(pk=retry.pk).update(
        args_kwargs={**retry.args_kwargs, "kwargs": {"language": "fr"}}, run_after=Now()
    )

    run_ready_tasks()

    assert set(DBTaskResult.objects.values_list("status", flat=True)) == {"SUCCESSFUL"}
    assert len(mailbox.messages(owner.email)) == 2
