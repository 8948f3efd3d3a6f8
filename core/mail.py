"""Email plumbing shared by the apps that send mail (the worker, and account emails after
the response)."""

from __future__ import annotations

import smtplib
import unicodedata
from email import charset
from email.header import Header
from email.utils import make_msgid, parseaddr

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.core.mail.backends.base import BaseEmailBackend

from core.confirm import isolated


def sender_domain() -> str:
    """The domain of `DEFAULT_FROM_EMAIL`'s address; empty when it has none."""
    _local, at, domain = parseaddr(settings.DEFAULT_FROM_EMAIL)[1].rpartition("@")
    return domain if at else ""


#: Bidirectional classes that can move the words around a name (UAX #9): right-to-left
#: letters and digits, and the embedding, override and isolate controls.
_REORDERING = frozenset(
    {"R", "AL", "AN", "LRE", "RLE", "LRO", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI"}
)


def name_in_text(name: str) -> str:
    """A user-chosen name (organization, project, key) for a subject or a plain-text part,
    which have no `<bdi>`: isolated as the HTML part isolates it (`core.confirm.isolated`),
    so a right-to-left name keeps its own order without taking the sentence's words with it,
    a line that starts with it keeps the sentence's direction, and a name stored before the
    name rules with an unclosed override (U+202E) reverses nothing after it. A name with no
    right-to-left character nor direction control reads the same either way and is left
    bare: subjects people filter their mail on stay as they were (found by an email
    audit)."""
    if any(unicodedata.bidirectional(character) in _REORDERING for character in name):
        return isolated(name)
    return name


def subject_line(text: str) -> str:
    """A subject on one line, whatever the names in it hold. A name may read as an RFC 2047
    encoded word (`=?utf-8?q?=E2=80=AE?=`: plain ASCII, so Django sends it as it is), which
    mail clients decode into what the name rules refuse: a text-direction override, a line
    break, another sentence (found by a Unicode audit). Such a subject is encoded whole, so
    the client shows it as written. Its encoded words are joined by a space, not a folded
    line (Django refuses a line break in a header); readers join adjacent words again.

    A subject that is not ASCII (a name in another script, an isolated name:
    `name_in_text`) is encoded here too, its first word sized to follow `Subject: `:
    Django's own encoding left that line empty (`Subject: ` and the words on the next), and
    readers that do not trim an unfolded value showed a subject starting with a space
    (found by an email audit)."""
    line = " ".join(text.split())
    if "=?" not in line and line.isascii():
        return line
    return " ".join(Header(line, "utf-8", header_name="Subject").encode().split())


def automated_headers() -> dict[str, str]:
    """The headers of every message the service sends by itself (RFC 3834): out-of-office
    and other automatic replies are not sent back to it, and the Message-ID names the
    sender's domain, not this host's name (a container's id, or `localhost`).

    Exchange and Outlook answer out-of-office by their own header, not RFC 3834's
    (MS-OXCMAIL 2.2.3.2.14): it asks them for no out-of-office nor auto-reply either, and
    leaves delivery and non-delivery reports alone (found by an email audit)."""
    return {
        "Auto-Submitted": "auto-generated",
        "X-Auto-Response-Suppress": "OOF, AutoReply",
        "Message-ID": make_msgid(domain=sender_domain() or None),
    }


def addressed_elsewhere(address: str) -> bool:
    """Whether mail to `address` would reach another mailbox than the one it names: its
    local part (before @) is not ASCII. Django's mail backend (5.2) writes such a part as
    an RFC 2047 encoded word, `RCPT TO:<=?utf-8?b?am9zw6k=?=@example.com>` for
    `josé@example.com` and the same in the To header, and never asks for SMTPUTF8 (RFC
    6531), even of a server that offers it: that is a mailbox of its own at the domain,
    anyone's who takes that name, and the account's reset links would go there. The address
    rules refuse such an address (`apps.accounts.emails`); accounts and invitations stored
    before them may hold one. A domain that is not ASCII goes out as IDNA (`xn--`): the
    same domain."""
    local, at, _domain = parseaddr(address)[1].rpartition("@")
    return bool(at) and not local.isascii()


class RecipientAddressedElsewhere(smtplib.SMTPRecipientsRefused):
    """A message not sent because a recipient is `addressed_elsewhere`: refused here for
    good, before any server is asked, with the reply a server gives a mailbox it cannot
    take (RFC 3463 5.1.3, bad mailbox address syntax), so the senders treat it as any
    mailbox refused for good (`core.mailserver.refused_for_good`): logged, counted and not
    tried again."""

    REPLY = (553, b"5.1.3 Not sent: the mailbox is not ASCII, and mail to it needs SMTPUTF8")


def refuse_addressed_elsewhere(message: EmailMessage) -> None:
    """Before `message` is sent: RecipientAddressedElsewhere when one of its recipients is
    `addressed_elsewhere` (the senders give each recipient a message of their own)."""
    refused = {
        address: RecipientAddressedElsewhere.REPLY
        for address in message.recipients()
        if addressed_elsewhere(address)
    }
    if refused:
        raise RecipientAddressedElsewhere(refused)


#: UTF-8 with quoted-printable bodies: text that is not ASCII crosses any mail server.
_SEVEN_BIT = charset.Charset("utf-8")
_SEVEN_BIT.body_encoding = charset.QP


def seven_bit(message: EmailMultiAlternatives) -> EmailMultiAlternatives:
    """`message`, its parts quoted-printable when one is not ASCII. Django sends UTF-8 text
    as 8bit, but without asking the server for it (RFC 6152's BODY=8BITMIME): a relay that
    does not take 8-bit mail may refuse it, cut the eighth bit, or convert it; every reminder
    holds an ellipsis, and names are in any script (found by an email audit). An ASCII
    message is left 7bit, as it was."""
    bodies = [message.body, *(alternative.content for alternative in message.alternatives)]
    if not all(str(body).isascii() for body in bodies):
        message.encoding = _SEVEN_BIT
    return message


def compose(*, to: str, subject: str, text: str, html: str) -> EmailMultiAlternatives:
    """The one way the service builds a message: to one recipient (each gets a copy of
    their own), the subject on one line with names encoded (`subject_line`), the automated
    headers, text with an HTML alternative, seven-bit when not ASCII (`seven_bit`). Send it
    with `send`."""
    message = EmailMultiAlternatives(
        subject=subject_line(subject),
        body=text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[to],
        headers=automated_headers(),
    )
    message.attach_alternative(html, "text/html")
    return seven_bit(message)


def send(message: EmailMessage, connection: BaseEmailBackend | None = None) -> None:
    """`message` sent (over `connection`, else a connection of its own); refused for good,
    unsent, when a recipient is `addressed_elsewhere`. The one way the service sends, so no
    sender can forget the refusal."""
    refuse_addressed_elsewhere(message)
    if connection is None:
        message.send()
    else:
        connection.send_messages([message])


class UnconfiguredEmailBackend(BaseEmailBackend):
    """Production without `EMAIL_URL`: every send fails loudly, so nothing is marked sent.

    The worker counts and logs the failure and tries again on its next round, so
    reminders go out once an operator sets `EMAIL_URL`.
    """

    def send_messages(self, email_messages):
        if not email_messages:
            return 0
        raise ImproperlyConfigured("EMAIL_URL is not set: cannot send email.")
