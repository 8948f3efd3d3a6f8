"""Confirming that an account's email address is its owner's.

Sign-up takes any address and logs the account in at once (SPEC §4.1), so an account's
address proves nothing until its owner shows they read mail sent to it: they type back a
6-digit code the account page (`/account/#email`) mails on request (sign-up mails nothing,
so SPEC §4.13's flows mail as they did), or they use a password-reset link or an invitation
mailed to it. The members page marks the members who
have not (found by the authorization audit: an account may be someone's sign-up with a
colleague's address, and `POST /v1/organizations/{orgId}/members` adds any account of an
address, as SPEC §4.2 says; the dashboard invites instead, which reaches the mailbox).

The code is stored as an HMAC under SECRET_KEY of the account and address (a copy of the
database alone does not give it back, and a changed address voids it), for 24 hours; one
made under a key now in SECRET_KEY_FALLBACKS still checks. It is
checked in constant time; wrong codes count per account (10 in 5 minutes, 20 a day) before
they are checked, as two-factor codes do. Mailing one is throttled per account (5 an hour);
a send that failed is retried by the worker with a new code, while the address is still
unconfirmed.
"""

from __future__ import annotations

import secrets
import unicodedata
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from apps.accounts import mail
from apps.accounts.models import User
from core import throttling
from core.errors import ValidationFailed

CODE_LIFETIME = timedelta(hours=24)
CODE_DIGITS = 6
WRONG_CODE = "That code is wrong or has expired. Send a new one and use the newest."
_SALT = "sigsentry.accounts.email_confirmation"


def is_confirmed(user: User) -> bool:
    return user.email_confirmed_at is not None


def code_out(user: User) -> bool:
    """Whether a code mailed to `user` still holds (none for an account an operator made,
    or one made before confirmation existed: it asks for one)."""
    expires_at = user.email_code_expires_at
    return bool(user.email_code_digest) and expires_at is not None and expires_at > timezone.now()


def _digest(user: User, code: str, secret: str | None = None) -> str:
    value = f"{user.pk}:{user.email}:{code}"
    return salted_hmac(_SALT, value, secret=secret, algorithm="sha256").hexdigest()


def _matches(user: User, code: str) -> bool:
    """Whether `code` is the one stored for `user`, under SECRET_KEY or a key of
    SECRET_KEY_FALLBACKS (a code mailed before a rotation holds its 24 hours, as reset links
    and sealed secrets do). Each compared in constant time."""
    return any(
        constant_time_compare(user.email_code_digest, _digest(user, code, secret))
        for secret in (settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS)
    )


def _new_code(user: User, now: datetime) -> str:
    """A new code for `user`, replacing any earlier one; returned once, stored as a digest."""
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    User.objects.filter(pk=user.pk).update(
        email_code_digest=_digest(user, code), email_code_expires_at=now + CODE_LIFETIME
    )
    return code


def mail_code(*, user: User) -> None:
    """Mail `user` a new code (after the response, in a request), unless already confirmed.
    429 RATE_LIMITED past 5 an hour for the account."""
    if is_confirmed(user):
        return
    throttling.enforce("email_code_account", str(user.pk))
    mail.send_email_code(user=user, code=_new_code(user, timezone.now()))


@mail.rebuilds("email_code", retry_for=timedelta(hours=1))
def _code_again(ids: dict) -> mail.Letter | None:
    user = mail.active_user(ids)
    if user is None or is_confirmed(user):
        return None
    return mail.email_code_letter(to=user.email, code=_new_code(user, timezone.now()))


def _clean(code: Any) -> str | None:
    if not isinstance(code, str):
        return None
    digits = "".join(unicodedata.normalize("NFKC", code).split())  # full-width digits too
    return digits if len(digits) == CODE_DIGITS and digits.isascii() and digits.isdigit() else None


def confirm(*, user: User, code: Any) -> None:
    """Confirm `user`'s address with the code mailed to it, or raise 400 on `code`.

    Wrong codes count per account before they are checked (`counting_failures`): a burst of
    simultaneous guesses cannot pass before any is counted. An address confirmed already
    stays confirmed, whatever the code.
    """
    account = str(user.pk)
    with (
        throttling.counting_failures(("email_code_wrong_day", account)),
        throttling.counting_failures(("email_code_wrong", account)),
    ):
        current = User.objects.filter(pk=user.pk).first()
        if current is None or is_confirmed(current):
            return
        cleaned = _clean(code)
        if cleaned is None or not code_out(current) or not _matches(current, cleaned):
            raise ValidationFailed({"code": [WRONG_CODE]})
        # Only if the row still holds the address and code just checked: an operator may
        # have changed the address meanwhile (found by the review).
        mark_confirmed(current, digest=current.email_code_digest)


def mark_confirmed(user: User, now: datetime | None = None, *, digest: str | None = None) -> None:
    """The owner of `user.email` read mail sent to it: a code typed back (its `digest`), a
    password-reset link or an invitation to that address used. Any code still out is void.

    Only while the account still holds that address (and that code): an operator who
    changed the address meanwhile unconfirmed the new one, which no mail reached.
    """
    now = now or timezone.now()
    holding = {"email": user.email} | ({"email_code_digest": digest} if digest else {})
    confirmed = User.objects.filter(pk=user.pk, email_confirmed_at__isnull=True, **holding).update(
        email_confirmed_at=now, email_code_digest="", email_code_expires_at=None
    )
    if confirmed and user.email_confirmed_at is None:
        user.email_confirmed_at = now
