"""The mail server as this process last found it: failing or not.

A server that fails itself (unreachable, silent, hanging up) makes every message wait its
whole timeout: five reset asks to a hung server held the worker, and the webhook
deliveries queued behind them, 56 s (an audit). Once one send found it failing, the
process's other sends for the next FAILING_FOR seconds are not tried: each waits for its
next try instead (`apps.accounts.mail`, `apps.notifications.mail`). Per process, so a
process never waits on the server more than once in that time.
"""

from __future__ import annotations

import re
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


#: An enhanced status code (RFC 3463) at the start of a reply's text: class.subject.detail.
_ENHANCED = re.compile(rb"\s*([245])\.(\d{1,3})\.(\d{1,3})\b")


def _mailbox_refused(code: int, reply: bytes) -> bool:
    """Whether one recipient's reply says its mailbox does not take mail, for good: a
    permanent addressing status (5.1.x: no such user, bad address) or a disabled mailbox
    (5.2.1); without an enhanced status, 550, 551 or 553. Not a relay, policy or
    authentication refusal (5.7.x, 530, 554): those are the sending side's to fix, and
    the message goes out once they are."""
    enhanced = _ENHANCED.match(reply or b"")
    if enhanced is not None:
        klass, subject, detail = (int(part) for part in enhanced.groups())
        return klass == 5 and (subject == 1 or (subject, detail) == (2, 1))
    return code in (550, 551, 553)


def refused_for_good(exc: BaseException) -> bool:
    """The server refused every recipient because its mailbox does not take mail: trying
    again only repeats the refusal."""
    if not isinstance(exc, smtplib.SMTPRecipientsRefused) or not exc.recipients:
        return False
    return all(_mailbox_refused(code, reply) for code, reply in exc.recipients.values())


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
