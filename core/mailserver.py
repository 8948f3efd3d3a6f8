"""The mail server as this process last found it: failing or not.

A server that fails itself (unreachable, silent, hanging up) makes every message wait its
whole timeout: five reset asks to a hung server held the worker, and the webhook
deliveries queued behind them, 56 s (an audit). Once one send found it failing, the
process's other sends for the next FAILING_FOR seconds are not tried: each waits for its
next try instead (`apps.accounts.mail`, `apps.notifications.mail`). Per process, so a
process never waits on the server more than once in that time.
"""

from __future__ import annotations

import smtplib
import time

#: How long one failure of the server itself spares this process's next sends their wait.
FAILING_FOR = 30.0

_failing_until = 0.0


class MailServerFailing(OSError):
    """A send not tried: the server failed a moment ago in this process."""


def is_server_failure(exc: BaseException | None) -> bool:
    """A failure of the mail server itself, as opposed to its answer about one message
    (smtplib's errors are OSErrors too: an answer is not a socket failure)."""
    if isinstance(exc, smtplib.SMTPServerDisconnected | smtplib.SMTPConnectError):
        return True
    if isinstance(exc, smtplib.SMTPHeloError):
        return True
    return isinstance(exc, OSError) and not isinstance(exc, smtplib.SMTPException)


def refused_for_good(exc: BaseException) -> bool:
    """The server refused every recipient with a permanent (5xx) answer: the address does
    not take mail, and trying again only repeats the refusal."""
    return isinstance(exc, smtplib.SMTPRecipientsRefused) and all(
        code >= 500 for code, _ in exc.recipients.values()
    )


def note(exc: BaseException) -> None:
    """What a send raised: a failure of the server itself marks it failing for a while."""
    global _failing_until
    if is_server_failure(exc) and not isinstance(exc, MailServerFailing):
        _failing_until = time.monotonic() + FAILING_FOR


def check() -> None:
    """Before a send: MailServerFailing while the server is marked failing."""
    if time.monotonic() < _failing_until:
        raise MailServerFailing("the mail server failed a moment ago")


def forget() -> None:
    """Clear the mark (a test's next send tries again)."""
    global _failing_until
    _failing_until = 0.0
