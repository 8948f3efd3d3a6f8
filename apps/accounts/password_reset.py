"""Password reset by email (SPEC §4.13).

The token is `<user id>.<Django reset token>`: the user id as URL-safe base64
of its 16 bytes, then Django's `PasswordResetTokenGenerator` token (a
timestamp and an HMAC-SHA256 under SECRET_KEY of the user id, password hash,
last login, email and timestamp). Nothing about it is stored: it is valid for
PASSWORD_RESET_TIMEOUT (one hour), and single use because setting the
password changes the hash it signs. It appears only in the emailed link
(`/reset/<token>/`, which a browser leaves at once for `/reset/set-password/`, the token
then sealed in a cookie: apps.accounts.reset_link) and in the confirm request, never in a
log or an error.
A send that failed is retried by the worker with a newly minted link (the queued
task holds the user id only).

Asking for a reset answers the same whether or not an account uses the email, and
takes the same time to the end of the connection: the request only queues the ask
(`mail_reset_link`, holding the normalized address) for the worker, which looks the
address up and mails the link, within its poll interval (a second); the finished ask is
deleted within 15 s (`forget_finished_reset_asks`). Sent by the web
process after its answer, as the other account emails are, the mail held the
connection and the server's process for as long as the mail server took: an
audit told existing accounts from unknown ones by when the connection closed
(10.7 vs 3.0 ms with a local mail server, 1 s vs 4 ms with a slow one). It is
throttled per client and per normalized address so nobody can flood an inbox.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.http import urlsafe_base64_decode, urlsafe_base64_encode
from django_tasks import TaskContext, TaskResultStatus, task
from django_tasks_db.models import DBTaskResult

from apps.accounts import email_confirmation, mail, services
from apps.accounts.emails import normalize_email
from apps.accounts.models import User
from apps.accounts.selectors import user_by_email
from apps.audit.services import UserAction
from core import throttling
from core.errors import ValidationFailed
from core.net import client_ip
from core.tasks import requeue_stalled

logger = logging.getLogger("sigsentry.mail")

MAX_TOKEN_LENGTH = 128
INVALID_TOKEN = "This reset link is invalid, was already used or has expired. Ask for a new one."


class ResetTokenGenerator(PasswordResetTokenGenerator):
    key_salt = "sigsentry.accounts.password-reset"


reset_tokens = ResetTokenGenerator()


def make_reset_token(user: User) -> str:
    return f"{urlsafe_base64_encode(user.pk.bytes)}.{reset_tokens.make_token(user)}"


@mail.rebuilds("password_reset", retry_for=timedelta(seconds=settings.PASSWORD_RESET_TIMEOUT))
def _reset_letter_again(ids: dict) -> mail.Letter | None:
    """A retry mints a new link (nothing about the first one was kept); none once the password
    changed or the user logged in since the request (the first link would have died too)."""
    user = mail.active_user(ids)
    if user is None or not user.has_usable_password() or _state_mark(user) != ids["mark"]:
        return None
    return mail.password_reset_letter(to=user.email, token=make_reset_token(user))


def _state_mark(user: User) -> str:
    """Changes with the password and the last login, which a reset token is signed over; a
    hash of Django's session hash (an HMAC of the password hash), never the hash itself."""
    state = f"{user.password_fingerprint()}|{user.last_login}"
    return hashlib.sha256(state.encode()).hexdigest()[:16]


def _split(token: Any) -> tuple[uuid.UUID, str] | None:
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    uid, _, signed = token.partition(".")
    try:
        return uuid.UUID(bytes=urlsafe_base64_decode(uid)), signed
    except (ValueError, TypeError):
        return None


def user_for_reset_token(token: Any) -> User | None:
    """The active user a valid, unexpired, unused reset token names; None otherwise."""
    parts = _split(token)
    if parts is None:
        return None
    user_id, signed = parts
    user = User.objects.filter(pk=user_id, is_active=True).first()
    if user is None or not reset_tokens.check_token(user, signed):
        return None
    return user


def request_password_reset(*, email: Any, request: HttpRequest | None = None) -> None:
    """Mail a reset link if an active account uses `email`; the caller cannot tell which."""
    if not isinstance(email, str) or not email.strip():
        raise ValidationFailed({"email": ["An email address is required."]})
    if len(email) > User._meta.get_field("email").max_length:
        raise ValidationFailed({"email": ["Enter a valid email address."]})
    account = normalize_email(email)
    ip = client_ip(request) if request is not None else None
    throttling.enforce("password_reset_ip", ip)
    throttling.enforce("password_reset_account", account)
    # the same one INSERT whether or not the account exists
    mail_reset_link.enqueue(account, timezone.now().isoformat())


@task(priority=mail.FIRST_TRY_PRIORITY, takes_context=True)
def mail_reset_link(
    context: TaskContext, account: str, asked_at: str | None = None, **later: Any
) -> None:
    """The worker's side of a reset ask: the link, if an active account with a password uses
    the normalized address `account` (its tries and retries: apps.accounts.mail). An ask
    older than a link's life is dropped: a worker down or behind for hours must not mail
    links nobody waits for any more, as the retries never do. Returns nothing: the task's
    stored result must not say whether the account exists."""
    # (`asked_at` None: an ask queued by the release before, during a deploy; `later`: the
    # keywords a later release adds, which this one does without: README, rolling deploys)
    waited = timezone.now() - datetime.fromisoformat(asked_at) if asked_at else timedelta(0)
    if waited > timedelta(seconds=settings.PASSWORD_RESET_TIMEOUT):
        logger.warning("password reset ask dropped: the worker took %d s", waited.total_seconds())
        return
    ask = str(context.task_result.id)
    if mail.retry_queued_for(ask):
        # A run of this ask before was killed mid-try (`forget_finished_reset_asks` runs it
        # again): the retry it queued first sends the link, a second one would be twice
        # (found by a fault-injection audit).
        return
    user = user_by_email(account)
    if user is None or not user.is_active or not user.has_usable_password():
        return
    mail.send_password_reset(
        user=user, token=make_reset_token(user), mark=_state_mark(user), ask=ask
    )


def forget_finished_reset_asks() -> int:
    """Delete the reset asks the worker has finished (the urgent checks run this, every 15
    s): each holds an address, whether or not an account uses it, which nothing needs once
    its link went out or was dropped (a retry holds the user id only). One whose worker
    died mid-run is run again first, then deleted once finished: left RUNNING, it kept the
    address for good (found by an audit). One a worker of another release could not run
    (a rolling deploy: `core.tasks.DEPLOY_MISMATCH`) is run again while its link could
    still be used, not forgotten with the link the user was told was sent (found by a
    rolling-deploy audit). The number deleted."""
    link_life = timedelta(seconds=settings.PASSWORD_RESET_TIMEOUT)
    requeue_stalled(mail_reset_link, mismatched_within=link_life)
    finished = [TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED]
    deleted, _ = DBTaskResult.objects.filter(
        task_path=mail_reset_link.module_path, status__in=finished
    ).delete()
    return deleted


def checked_reset_token(token: Any, request: HttpRequest | None) -> User:
    """The user a reset token is good for, checked as a credential is: counted against the
    client (`failed_auth_ip`) before the check, so a burst of guesses cannot all be checked,
    and given back when it is good. 429 RATE_LIMITED past the limit, 400 on `token`."""
    ip = client_ip(request) if request is not None else None
    with throttling.counting_failures(("failed_auth_ip", ip)):
        user = user_for_reset_token(token)
        if user is None:
            raise ValidationFailed({"token": [INVALID_TOKEN]})
    return user


def confirm_password_reset(
    *, token: Any, password: Any, request: HttpRequest | None = None
) -> User:
    """Set the new password with a reset token: every session ends, an email says so.

    A bad, used or expired token is a 400 on `token` and changes nothing;
    failures count against the client like failed credentials. Two requests
    with one token: the user row is locked and the token checked again under
    the lock, so only the first sets a password.
    """
    user = checked_reset_token(token, request)
    _user_id, signed = _split(token)
    hashed = services.hashed_new_password(user=user, new_password=password)
    with transaction.atomic():
        locked = User.objects.select_for_update().get(pk=user.pk)
        if not reset_tokens.check_token(locked, signed):
            raise ValidationFailed({"token": [INVALID_TOKEN]})
        services.store_password(
            user=locked, hashed=hashed, request=request, action=UserAction.PASSWORD_RESET
        )
        # The link reached the address's mailbox: its owner is the account's.
        email_confirmation.mark_confirmed(locked)
    return locked
