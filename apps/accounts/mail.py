"""Every email the account features send, in one module.

Each message is plain text plus HTML, rendered from `templates/emails/<name>.txt`
and `.html` with `SITE_URL` as the base of its links; the sender is
`DEFAULT_FROM_EMAIL` and the transport `EMAIL_URL` (Django's mail).

During a request a message is rendered and sent after the response has gone out
(Django's `request_finished`, which the server sends once the body is written), so
an answer takes the same time whether or not an email was sent: the password
reset answer cannot tell whether an account exists by its timing. Outside a
request (a management command, a shell) it is sent at once. A failed send (SMTP
down, a refused recipient) is logged with the kind of message and the error's
class only, never the address, link or token, and never reaches the user. These are
not queued for the worker: the queue is a database table, and a one-time link must
never be written there; a user whose email did not arrive asks again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar
from datetime import datetime

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.core.signals import request_finished, request_started
from django.template.loader import render_to_string

logger = logging.getLogger("sigsentry.mail")

#: Messages (their kind, and how to compose them) waiting for the end of the current
#: request; None outside a request.
_pending: ContextVar[list[tuple[str, Callable[[], EmailMultiAlternatives]]] | None] = ContextVar(
    "sigsentry_pending_mail", default=None
)


def _request_started(**kwargs) -> None:
    _pending.set([])


def _request_finished(**kwargs) -> None:
    queued = _pending.get()
    _pending.set(None)
    for kind, compose in queued or ():
        _send(kind, compose)


request_started.connect(_request_started, dispatch_uid="sigsentry.mail.request_started")
request_finished.connect(_request_finished, dispatch_uid="sigsentry.mail.request_finished")


def _send(kind: str, compose: Callable[[], EmailMultiAlternatives]) -> None:
    try:
        compose().send()
    except Exception as exc:  # the answer is already given: log and go on
        logger.error("email not sent: %s (%s)", kind, type(exc).__name__)


def _deliver(kind: str, to: str, subject: str, template: str, context: dict) -> None:
    context = {"site_url": settings.SITE_URL, **context}

    def compose() -> EmailMultiAlternatives:
        message = EmailMultiAlternatives(
            # Names come from users: a line break must not reach a header.
            subject=" ".join(subject.split()),
            body=render_to_string(f"emails/{template}.txt", context),
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[to],
        )
        html = render_to_string(f"emails/{template}.html", context)
        message.attach_alternative(html, "text/html")
        return message

    queued = _pending.get()
    if queued is None:
        _send(kind, compose)
    else:
        queued.append((kind, compose))


def link(path: str) -> str:
    """An absolute link to a page of this site, for an email."""
    return f"{settings.SITE_URL}{path}"


def send_password_reset(*, to: str, token: str) -> None:
    """The reset link (single use, one hour). The token appears only in this message."""
    _deliver(
        "password_reset",
        to,
        "Reset your SigSentry password",
        "password_reset",
        {"reset_url": link(f"/reset/{token}/"), "email": to},
    )


def send_password_changed(*, to: str, when: datetime, ip: str | None) -> None:
    _deliver(
        "password_changed",
        to,
        "Your SigSentry password was changed",
        "password_changed",
        {"when": when, "ip": ip, "email": to, "reset_url": link("/reset/")},
    )


def send_two_factor_changed(*, to: str, enabled: bool, when: datetime, ip: str | None) -> None:
    state = "on" if enabled else "off"
    _deliver(
        f"two_factor_{state}",
        to,
        f"Two-factor authentication turned {state} for your SigSentry account",
        "two_factor_changed",
        {"enabled": enabled, "when": when, "ip": ip, "email": to, "account_url": link("/account/")},
    )


def send_invitation(
    *,
    to: str,
    token: str,
    organization_name: str,
    inviter_email: str | None,
    role_label: str,
    expires_at: datetime,
) -> None:
    """The invitation link (single use, seven days). The token appears only in this message."""
    _deliver(
        "invitation",
        to,
        f"You are invited to join {organization_name} on SigSentry",
        "invitation",
        {
            "invitation_url": link(f"/invitations/{token}/"),
            "organization_name": organization_name,
            "inviter_email": inviter_email,
            "role_label": role_label,
            "expires_at": expires_at,
            "email": to,
        },
    )
