"""Every kind of email the service sends, read as it crossed the wire to a real SMTP server
(aiosmtpd): the MIME structure, the lines, the headers, and what the HTML asks of a client.

What a mail client or a spam filter holds against a message: a line over 998 octets
(RFC 5322 §2.1.1: servers cut or refuse it), a bare LF, a part in an undeclared charset,
an HTML part that needs CSS, images or fonts from elsewhere, a link that is relative or
not on SITE_URL, a button whose address the reader cannot see or copy, a plain-text part
that leaves out a link the HTML gives.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from apps.accounts import mail
from apps.orgs.models import Organization
from apps.projects.models import Project
from core.mail import addressed_elsewhere
from tests.factories import bulk_secret_keys

pytestmark = pytest.mark.django_db

SITE = "https://sigsentry.example.com"
SENDER = "SigSentry Sécurité <no-reply@sigsentry.example.com>"
HREF = re.compile(r'href="([^"]*)"')
BUTTON = re.compile(r'<a href="([^"]*)" style="display:inline-block[^"]*">')


@pytest.fixture
def site(settings, mailbox):
    settings.SITE_URL = SITE
    settings.DEFAULT_FROM_EMAIL = SENDER
    return mailbox


def every_account_email(user) -> None:
    """One of each account email, through the functions the features call (outside a
    request: sent at once)."""
    now = timezone.now()
    mail.send_password_reset(user=user, token="reset-token", mark="m", ask=str(uuid.uuid4()))
    mail.send_email_code(user=user, code="482913")
    mail.send_password_changed(user=user, when=now, ip="203.0.113.9")
    mail.send_email_changed(user=user, old="before@example.com", when=now)
    mail.send_two_factor_changed(user=user, enabled=True, when=now, ip="203.0.113.9")
    mail.send_two_factor_changed(user=user, enabled=False, when=now, ip=None)
    mail.send_recovery_code_used(user=user, left=2, when=now, ip="203.0.113.9")
    mail.send_account_deleted(
        to=user.email, when=now, ip="203.0.113.9", two_factor=True, organizations=2
    )
    letter = mail.invitation_letter(
        to="newcomer@example.com",
        token="invitation-token",
        organization_name="Acme",
        inviter_email=user.email,
        role_label="Member",
        expires_at=now + timedelta(days=7),
    )
    mail.send_invitation(letter=letter, invitation_id=uuid.uuid4())


def a_large_notice(project) -> None:
    """A reminder naming 25 keys with the longest names, in a long-named project and
    organization, and counting the rest: its lines are the longest any message has."""
    long_name = "ذ" * 99 + "x"  # two octets a character in UTF-8
    Organization.objects.filter(pk=project.organization_id).update(name=long_name)
    Project.objects.filter(pk=project.pk).update(name=long_name)
    soon = timezone.now() + timedelta(days=5)
    bulk_secret_keys(project, 30, expires_at=soon, each=lambda n: {"name": f"{n:02}" + "ض" * 98})
    call_command("send_notifications")


@pytest.fixture
def messages(site, owner, project):
    every_account_email(owner)
    a_large_notice(project)
    received = site.messages()
    assert len(received) == 10
    return received


def test_every_message_is_plain_text_then_html_in_utf_8(messages):
    for message in messages:
        parts = [part.get_content_type() for part in message.message.iter_parts()]
        assert message.message.get_content_type() == "multipart/alternative"
        assert parts == ["text/plain", "text/html"], message.subject  # the last is preferred
        for part in message.message.iter_parts():
            assert part.get_content_charset() == "utf-8"
            assert part["Content-Transfer-Encoding"] in ("7bit", "quoted-printable")


def test_every_line_is_seven_bit_ends_in_crlf_and_holds_at_most_998_octets(messages):
    for message in messages:
        lines = message.raw.split(b"\r\n")
        assert not [line for line in lines if b"\n" in line or b"\r" in line], message.subject
        assert max(len(line) for line in lines) <= 998, message.subject
        # 7-bit, headers and bodies: no server need offer SMTPUTF8 or 8BITMIME for it
        assert message.raw.isascii(), message.subject


def test_every_message_says_who_sent_it_when_and_that_it_was_automatic(messages):
    for message in messages:
        headers = message.message
        assert str(headers["From"]) == SENDER
        assert headers["Date"] is not None and headers["Date"].datetime is not None
        assert str(headers["Date"]).endswith(" +0000"), headers["Date"]  # UTC, not "unknown"
        assert str(headers["Message-ID"]).endswith("@sigsentry.example.com>")
        assert headers["Auto-Submitted"] == "auto-generated"
        assert headers["X-Auto-Response-Suppress"] == "OOF, AutoReply"  # Exchange's own
        assert headers["Subject"] is not None and not str(headers["Subject"]).startswith(" ")


def test_the_html_needs_nothing_from_elsewhere_nor_a_style_sheet(messages):
    for message in messages:
        html = message.html.lower()
        for needs in ("<img", "<link", "<script", "<style", "@import", "url(", " src=", "<iframe"):
            assert needs not in html, (message.subject, needs)


def test_every_link_is_absolute_on_site_url_and_given_in_full_in_the_plain_text(messages):
    for message in messages:
        for link in HREF.findall(message.html):
            assert link.startswith(f"{SITE}/"), (message.subject, link)
            assert link in message.text, (message.subject, link)


def test_every_button_also_shows_its_address_as_a_link_to_copy(messages):
    """A client that shows no styles, or a reader who must not click, still sees where it
    leads."""
    for message in messages:
        for url in BUTTON.findall(message.html):
            assert f">{url}</a>" in message.html, (message.subject, url)


def test_a_one_time_secret_appears_in_its_own_message_only(messages):
    reset = [m for m in messages if "reset-token" in m.raw.decode("utf-8", "replace")]
    code = [m for m in messages if "482913" in m.raw.decode("utf-8", "replace")]
    invitation = [m for m in messages if "invitation-token" in m.raw.decode("utf-8", "replace")]

    assert [m.subject for m in reset] == ["Reset your SigSentry password"]
    assert [m.subject for m in code] == ["Your SigSentry confirmation code"]
    assert [m.subject for m in invitation] == ["You are invited to join Acme on SigSentry"]
    for message, secret in ((reset[0], "reset-token"), (code[0], "482913")):
        assert secret in message.text and secret in message.html  # and not in a header
        assert secret not in message.raw.split(b"\r\n\r\n", 1)[0].decode()


@pytest.mark.parametrize(
    ("address", "elsewhere"),
    [
        ("jos\u00e9@example.com", True),  # sent as =?utf-8?b?am9zw6k=?=@example.com
        ("\u7528\u6237@example.com", True),
        ("jose@b\u00fccher.example", False),  # the domain as xn--bcher-kva: the same one
        ("jose@example.com", False),
        ("Jos\u00e9 <jose@example.com>", False),  # a display name is not the mailbox
    ],
)
def test_only_a_mailbox_that_is_not_ascii_is_addressed_elsewhere(address, elsewhere):
    assert addressed_elsewhere(address) is elsewhere


def test_only_core_mail_builds_or_sends_a_message():
    """`core.mail.compose` and `core.mail.send` are the one way out: the seven-bit encoding
    and the refusal of a mailbox named elsewhere (`addressed_elsewhere`) cannot be forgotten
    by a sender of its own."""
    root = Path(__file__).resolve().parent.parent
    builds = re.compile(
        r"\b(EmailMessage|EmailMultiAlternatives|send_mail|send_mass_mail)\(|"
        r"\.send_messages\(|\bmail_(admins|managers)\("
    )
    senders = [
        str(path.relative_to(root))
        for package in ("apps", "core", "sigsentry")
        for path in (root / package).rglob("*.py")
        if builds.search(path.read_text()) and path != root / "core" / "mail.py"
    ]
    assert senders == []
