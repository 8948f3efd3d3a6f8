"""Every email the account features send, in one module, and their retries.

Each message is plain text plus HTML, rendered from `templates/emails/<name>.txt`
and `.html` with `SITE_URL` as the base of its links; the sender is
`DEFAULT_FROM_EMAIL` and the transport `EMAIL_URL` (Django's mail).

During a request a message is rendered and sent after the response has gone out
(Django's `request_finished`, which the server sends once the body is written): the
answer does not wait for the mail server. The connection and the server's process
do, though, so a message whose sending must say nothing (the password reset's, which
would tell whether an account exists) is queued for the worker instead
(`apps.accounts.password_reset`). Outside a request (a management command, a shell,
the worker) it is sent at once. A failed send (SMTP
down, a refused recipient) is logged with the kind of message and the error's
class only, never the address, link or token, and never reaches the user.

Before the first try, its retry is queued for the worker (`resend_email`, due in
30 s) and withdrawn once the message went out: a process killed during the try (a
hung mail server, a deploy) or a try that failed leaves the retry in place, so no
message is lost with the process that was sending it. The worker tries again,
backing off from 30 s to 30 minutes, until it goes out or its kind's time is up (a
reset link's hour, an invitation's seven days, a day for the notices). A try that
takes longer than the first delay (at least 22 s) and still succeeds can be sent
twice (a second invitation link replaces the first; two reset links both work until
either is used): a duplicate beats a loss. The queued
task holds the kind, ids and, for the password-changed and two-factor notices, the
time and client IP the message shows (a failed first try leaves them in its retry's
row, kept like every finished task for 7 days after its last try); never a link: a
one-time link must never be written to the database, so each kind registers how its
message is built again from those values at send time (`rebuilds`), minting a new link
where it has one, or building nothing once the message has lost its point (the account
gone, the invitation accepted or cancelled).
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.core.signals import request_finished, request_started
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone
from django_tasks import TaskResult, TaskResultStatus, task
from django_tasks_db.models import DBTaskResult

from apps.accounts.models import User
from core import mail, mailserver, metrics
from core.logging import current_request_id, serving
from core.mail import name_in_text
from core.tasks import requeue_stalled

logger = logging.getLogger("sigsentry.mail")

#: A try the worker makes, first or again, goes ahead of webhook deliveries, as the
#: notifications do: a retry at the default priority waited behind another organization's
#: backlog of deliveries (a fairness audit: a reset link 7 minutes late; an hour's
#: backlog would have given it up).
FIRST_TRY_PRIORITY = 10
FIRST_RETRY_SECONDS = 30
MAX_RETRY_SECONDS = 1800
NOTICE_RETRY_FOR = timedelta(days=1)


@dataclass(frozen=True)
class Letter:
    """One message, ready to render: where it goes, its subject and template, its values."""

    to: str
    subject: str
    template: str
    context: dict[str, Any] = field(default_factory=dict)

    def compose(self) -> EmailMultiAlternatives:
        context = {"site_url": settings.SITE_URL, **self.context}
        return mail.compose(
            to=self.to,
            subject=self.subject,  # names in it come from users
            text=render_to_string(f"emails/{self.template}.txt", context),
            html=render_to_string(f"emails/{self.template}.html", context),
        )

    def send(self) -> None:
        """Composed and sent; refused for good, unsent, to an address mail would reach
        under another mailbox (`core.mail.addressed_elsewhere`: an account or invitation
        stored before the address rules)."""
        mail.send(self.compose())


#: kind -> (how the worker builds the letter again from the queued ids, how long it tries)
_rebuilds: dict[str, tuple[Callable[[dict], Letter | None], timedelta]] = {}


def rebuilds(kind: str, *, retry_for: timedelta):
    """Register how a failed `kind` is built again at send time, from what its retry queued:
    ids, and a notice's time and client IP (never a secret)."""

    def register(rebuild: Callable[[dict], Letter | None]) -> Callable[[dict], Letter | None]:
        _rebuilds[kind] = (rebuild, retry_for)
        return rebuild

    return register


#: Messages waiting for the end of the current request, each with the request's id (its
#: lines carry it: they are written after the response); None outside a request.
_pending: ContextVar[list[tuple[str, Letter, dict, str | None]] | None] = ContextVar(
    "sigsentry_pending_mail", default=None
)


def _request_started(**kwargs) -> None:
    _pending.set([])


def _request_finished(**kwargs) -> None:
    queued = _pending.get()
    _pending.set(None)
    for kind, letter, ids, request_id in queued or ():
        with serving(request_id):
            _send(kind, letter, ids)


request_started.connect(_request_started, dispatch_uid="sigsentry.mail.request_started")
request_finished.connect(_request_finished, dispatch_uid="sigsentry.mail.request_finished")


def _send(kind: str, letter: Letter, ids: dict) -> None:
    """Queue the retry, try, and withdraw the retry once the message went out, or once the
    server refused its mailbox for good (`core.mailserver.refused_for_good`: trying again
    for the kind's time, an invitation's seven days, would only repeat the refusal, found
    by an audit)."""
    retry = _queue_retry(kind, ids, attempt=1, since=timezone.now())
    try:
        mailserver.check()
        letter.send()
    except Exception as exc:  # the answer is already given: log; the queued retry stands
        mailserver.note(exc)
        if not _failed(kind, exc, ids):
            if retry is None:
                logger.error("email lost: %s (no retry could be queued)", kind)
            return
        # the address takes no mail: its retry is withdrawn, as a sent message's is
    if retry is not None:
        with contextlib.suppress(Exception):  # the database gone since: one message twice
            DBTaskResult.objects.filter(id=retry.id, status=TaskResultStatus.READY).delete()


def _failed(kind: str, exc: Exception, ids: dict) -> bool:
    """Logged (kind, error class and the ids the message is about, never an address or
    link) and counted for /metrics. Whether the refusal is final: then not tried again."""
    about = {name: str(value) for name, value in ids.items() if name.endswith("_id")}
    logger.error(
        "email not sent: %s (%s)", kind, type(exc).__name__, extra={"email_kind": kind, **about}
    )
    with contextlib.suppress(Exception):  # the database down too: queueing the retry says so
        metrics.record_email_failure()
    if not mailserver.refused_for_good(exc):
        return False
    logger.warning("email refused for good: %s (not tried again)", kind)
    return True


def _deliver(kind: str, letter: Letter, ids: dict) -> None:
    """Send after the response (at once outside a request); `ids` rebuild it for a retry."""
    queued = _pending.get()
    if queued is None:
        _send(kind, letter, ids)
    else:
        queued.append((kind, letter, ids, current_request_id.get()))


def retry_delay(attempt: int) -> timedelta:
    """~30 s, 1 min, 2 min … capped at 30 minutes, ±25 %."""
    base = min(FIRST_RETRY_SECONDS * 2 ** max(0, attempt - 1), MAX_RETRY_SECONDS)
    return timedelta(seconds=base * random.uniform(0.75, 1.25))


def _time_up(kind: str, since: datetime, attempts: int) -> bool:
    """Whether `kind` (first failed at `since`) is past its time, or unknown to this release;
    logged as given up."""
    if kind in _rebuilds and timezone.now() - since < _rebuilds[kind][1]:
        return False
    logger.error("email given up: %s after %d attempts", kind, attempts)
    return True


def _queue_retry(kind: str, ids: dict, *, attempt: int, since: datetime) -> TaskResult | None:
    """The worker's next try, after `attempt` tries; None once the kind's time is up, or
    when the database cannot keep it (logged)."""
    if _time_up(kind, since, attempt):
        return None
    try:
        later = timezone.now() + retry_delay(attempt)
        return resend_email.using(priority=FIRST_TRY_PRIORITY, run_after=later).enqueue(
            kind, ids, attempt, since.isoformat()
        )
    except Exception as exc:  # the database is down too: nothing left to keep it in
        logger.error("email retry not queued: %s (%s)", kind, type(exc).__name__)
        return None


@task(priority=FIRST_TRY_PRIORITY)
def resend_email(kind: str, ids: dict, attempts: int, since: str, **later: Any) -> str:
    """The worker's next try of an email whose last try failed (`attempts` so far). `later`:
    the keywords a later release adds, which this one does without (README, rolling
    deploys)."""
    first_failed = datetime.fromisoformat(since)
    if _time_up(kind, first_failed, attempts):
        return "given up"  # a worker that was down or behind: no reset link hours late
    try:
        letter = _rebuilds[kind][0](ids)
        if letter is None:
            return "no longer needed"
        mailserver.check()
        letter.send()
    except Exception as exc:  # the database or the mail server: this try failed, not the email
        mailserver.note(exc)
        if _failed(kind, exc, ids):
            return "refused for good"
        queued = _queue_retry(kind, ids, attempt=attempts + 1, since=first_failed)
        return "retry queued" if queued is not None else "given up"
    return "sent"


def withdraw_retries_once_deleted(user_ids: Iterable[Any]) -> None:
    """In the transaction that deletes the accounts `user_ids`: once it commits, the retries
    of their emails go, waiting or finished (a finished task's row is kept 7 days). Each
    would find no account and send nothing, and some hold what the account was: an
    `email_changed` retry its old and new addresses, a notice's the client's IP. One a worker
    is trying stays, the worker's row until it is done, and sends nothing. After the commit,
    not in the deletion's transaction: the query reads a JSON path no index covers, and the
    deletion's locks would be held while it scanned the queue. Should it fail, the deletion
    stands and the failure is logged by its class only."""
    ids = [str(user_id) for user_id in user_ids]
    transaction.on_commit(lambda: _withdraw_retries_of(ids))


def _withdraw_retries_of(user_ids: list[str]) -> None:
    try:
        DBTaskResult.objects.filter(
            task_path=resend_email.module_path, args_kwargs__args__1__user_id__in=user_ids
        ).exclude(status=TaskResultStatus.RUNNING).delete()
    except Exception as exc:  # after the commit: the accounts are gone whatever happens here
        logger.error("email retries of deleted accounts not withdrawn (%s)", type(exc).__name__)


def requeue_stalled_retries() -> int:
    """Make the retries whose worker is gone ready again (the scheduled checks run this),
    and those a worker of another release could not run (a rolling deploy:
    `core.tasks.DEPLOY_MISMATCH`) within the longest time an email is tried (each gives
    itself up once its own kind's time is up). The number made ready."""
    tried_for = max((retry_for for _, retry_for in _rebuilds.values()), default=NOTICE_RETRY_FOR)
    # a try takes at most a few EMAIL_TIMEOUTs
    stalled = requeue_stalled(resend_email, mismatched_within=tried_for)
    if stalled:
        logger.warning(
            "%d email retries requeued: their worker stopped mid-try, or was of another release",
            stalled,
        )
    return stalled


def retry_queue_state() -> metrics.QueueState:
    """/metrics, queue `account_emails`: account emails waiting for the worker's next try
    (the age is since the latest failed try)."""
    waiting = DBTaskResult.objects.filter(
        task_path=resend_email.module_path, status=TaskResultStatus.READY
    )
    return metrics.queue_state_of(waiting, "enqueued_at")


def link(path: str) -> str:
    """An absolute link to a page of this site, for an email."""
    return f"{settings.SITE_URL}{path}"


def active_user(ids: dict) -> User | None:
    """The active user a queued retry names (`ids["user_id"]`), or None."""
    return User.objects.filter(pk=ids["user_id"], is_active=True).first()


def password_reset_letter(*, to: str, token: str) -> Letter:
    """The reset link (single use, one hour). The token appears only in this message."""
    return Letter(
        to,
        "Reset your SigSentry password",
        "password_reset",
        {
            "reset_url": link(f"/reset/{token}/"),
            "email": to,
            # the token's clock starts as it is made, just before this letter (make_reset_token)
            "expires_at": timezone.now() + timedelta(seconds=settings.PASSWORD_RESET_TIMEOUT),
        },
    )


def send_password_reset(*, user: User, token: str, mark: str, ask: str) -> None:
    """Retried with a new link while `mark` (the account's state the link is signed over,
    hashed) is unchanged (apps.accounts.password_reset registers how). `ask` (the queued
    ask's id) is kept with the retry: `retry_queued_for`."""
    _deliver(
        "password_reset",
        password_reset_letter(to=user.email, token=token),
        {"user_id": str(user.pk), "mark": mark, "ask": ask},
    )


def retry_queued_for(ask: str) -> bool:
    """Whether a try of the reset ask `ask` queued its retry (sent, or to be sent)."""
    return DBTaskResult.objects.filter(
        task_path=resend_email.module_path, args_kwargs__args__1__ask=ask
    ).exists()


def email_code_letter(*, to: str, code: str) -> Letter:
    """The code that confirms the address (apps.accounts.email_confirmation). The code
    appears only in this message."""
    return Letter(
        to,
        "Your SigSentry confirmation code",
        "email_code",
        {"code": code, "email": to, "account_url": link("/account/#email")},
    )


def send_email_code(*, user: User, code: str) -> None:
    """Retried with a new code while the address is unconfirmed
    (apps.accounts.email_confirmation registers how)."""
    _deliver("email_code", email_code_letter(to=user.email, code=code), {"user_id": str(user.pk)})


def _password_changed_letter(*, to: str, when: datetime, ip: str | None) -> Letter:
    return Letter(
        to,
        "Your SigSentry password was changed",
        "password_changed",
        {"when": when, "ip": ip, "email": to, "reset_url": link("/reset/")},
    )


def send_password_changed(*, user: User, when: datetime, ip: str | None) -> None:
    ids = {"user_id": str(user.pk), "when": when.isoformat(), "ip": ip}
    _deliver("password_changed", _password_changed_letter(to=user.email, when=when, ip=ip), ids)


@rebuilds("password_changed", retry_for=NOTICE_RETRY_FOR)
def _password_changed_again(ids: dict) -> Letter | None:
    user = active_user(ids)
    if user is None:
        return None
    return _password_changed_letter(
        to=user.email, when=datetime.fromisoformat(ids["when"]), ip=ids["ip"]
    )


def _account_deleted_letter(
    *, to: str, when: datetime, ip: str | None, two_factor: bool, organizations: int
) -> Letter:
    return Letter(
        to,
        "Your SigSentry account was deleted",
        "account_deleted",
        {
            "email": to,
            "when": when,
            "ip": ip,
            "two_factor": two_factor,
            "organizations": organizations,
        },
    )


def send_account_deleted(
    *, to: str, when: datetime, ip: str | None, two_factor: bool, organizations: int
) -> None:
    """To the address of an account just deleted (`services.delete_account`): no link, and
    nothing that works any more. The account is gone, so a retry holds the address itself,
    in its queued row (kept 7 days after its last try, as every finished task): only when
    the first try failed."""
    ids = {
        "to": to,
        "when": when.isoformat(),
        "ip": ip,
        "two_factor": two_factor,
        "organizations": organizations,
    }
    _deliver(
        "account_deleted",
        _account_deleted_letter(
            to=to, when=when, ip=ip, two_factor=two_factor, organizations=organizations
        ),
        ids,
    )


@rebuilds("account_deleted", retry_for=NOTICE_RETRY_FOR)
def _account_deleted_again(ids: dict) -> Letter | None:
    if User.objects.filter(email=ids["to"]).exists():
        return None  # the address signed up again meanwhile: that account was not deleted
    return _account_deleted_letter(
        to=ids["to"],
        when=datetime.fromisoformat(ids["when"]),
        ip=ids["ip"],
        two_factor=bool(ids["two_factor"]),
        organizations=int(ids["organizations"]),
    )


def _email_changed_letter(*, to: str, new: str, when: datetime) -> Letter:
    return Letter(
        to,
        "The email address of your SigSentry account was changed",
        "email_changed",
        {"email": to, "new": new, "when": when},
    )


def send_email_changed(*, user: User, old: str, when: datetime) -> None:
    """To the address the account had, which an operator changed to `user.email` (the
    admin): whoever holds the new one can reset the password, so the owner of the old one
    must hear of it there (found by an admin audit: the change was silent)."""
    ids = {"user_id": str(user.pk), "old": old, "new": user.email, "when": when.isoformat()}
    _deliver("email_changed", _email_changed_letter(to=old, new=user.email, when=when), ids)


@rebuilds("email_changed", retry_for=NOTICE_RETRY_FOR)
def _email_changed_again(ids: dict) -> Letter | None:
    if active_user(ids) is None:
        return None
    return _email_changed_letter(
        to=ids["old"], new=ids["new"], when=datetime.fromisoformat(ids["when"])
    )


def _two_factor_letter(*, to: str, enabled: bool, when: datetime, ip: str | None) -> Letter:
    state = "on" if enabled else "off"
    return Letter(
        to,
        f"Two-factor authentication turned {state} for your SigSentry account",
        "two_factor_changed",
        {
            "enabled": enabled,
            "when": when,
            "ip": ip,
            "email": to,
            "account_url": link("/account/"),
            "reset_url": link("/reset/"),
        },
    )


def send_two_factor_changed(*, user: User, enabled: bool, when: datetime, ip: str | None) -> None:
    ids = {"user_id": str(user.pk), "enabled": enabled, "when": when.isoformat(), "ip": ip}
    letter = _two_factor_letter(to=user.email, enabled=enabled, when=when, ip=ip)
    _deliver(f"two_factor_{'on' if enabled else 'off'}", letter, ids)


def _two_factor_again(ids: dict) -> Letter | None:
    user = active_user(ids)
    if user is None:
        return None
    return _two_factor_letter(
        to=user.email,
        enabled=ids["enabled"],
        when=datetime.fromisoformat(ids["when"]),
        ip=ids["ip"],
    )


rebuilds("two_factor_on", retry_for=NOTICE_RETRY_FOR)(_two_factor_again)
rebuilds("two_factor_off", retry_for=NOTICE_RETRY_FOR)(_two_factor_again)


def _recovery_code_letter(*, to: str, left: int, when: datetime, ip: str | None) -> Letter:
    return Letter(
        to,
        "A recovery code was used to log in to your SigSentry account",
        "recovery_code_used",
        {
            "left": left,
            "when": when,
            "ip": ip,
            "email": to,
            "account_url": link("/account/"),
            "reset_url": link("/reset/"),
        },
    )


def send_recovery_code_used(*, user: User, left: int, when: datetime, ip: str | None) -> None:
    """A recovery code stands in for the authenticator: its owner hears of each use, as a
    password change (found by an email audit)."""
    ids = {"user_id": str(user.pk), "left": left, "when": when.isoformat(), "ip": ip}
    letter = _recovery_code_letter(to=user.email, left=left, when=when, ip=ip)
    _deliver("recovery_code_used", letter, ids)


@rebuilds("recovery_code_used", retry_for=NOTICE_RETRY_FOR)
def _recovery_code_again(ids: dict) -> Letter | None:
    user = active_user(ids)
    if user is None:
        return None
    when = datetime.fromisoformat(ids["when"])
    return _recovery_code_letter(to=user.email, left=ids["left"], when=when, ip=ids["ip"])


def invitation_letter(
    *,
    to: str,
    token: str,
    organization_name: str,
    inviter_email: str | None,
    role_label: str,
    expires_at: datetime,
    inviter_confirmed: bool = True,
) -> Letter:
    """The invitation link (single use, seven days). The token appears only in this message.
    An inviter whose address is not confirmed is named as such: anyone can sign up with any
    address, and the mail must not vouch for it (found by an email audit)."""
    return Letter(
        to,
        f"You are invited to join {name_in_text(organization_name)} on SigSentry",
        "invitation",
        {
            "invitation_url": link(f"/invitations/{token}/"),
            "organization_name": organization_name,
            "inviter_email": inviter_email,
            "inviter_confirmed": inviter_confirmed,
            "role_label": role_label,
            "expires_at": expires_at,
            "email": to,
        },
    )


def send_invitation(*, letter: Letter, invitation_id: Any) -> None:
    """Retried with a new link (apps.invitations.services registers how)."""
    _deliver("invitation", letter, {"invitation_id": str(invitation_id)})
