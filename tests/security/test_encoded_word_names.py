"""Names that read as RFC 2047 encoded words reach a subject as written.

Found by a Unicode audit: `Acme =?utf-8?q?=E2=80=AE?=gnp.exe` passes the name rules (it is
plain ASCII), Django sent an ASCII subject as it was, and mail clients decoded the word
into what the rules refuse: a text-direction override, a line break and a `Bcc:` line,
another sentence. Read back here through a real SMTP server and Python's mail parser,
which decodes as the clients do.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from apps.apikeys.keyformat import KeyKind
from apps.orgs.models import Organization
from tests.factories import make_key
from tests.invitations.test_views import invite
from tests.orgs.helpers import error_fields, user_client

pytestmark = pytest.mark.django_db

NAMES = [
    "Acme =?utf-8?q?=E2=80=AE?=gnp.exe",
    "Acme =?utf-8?q?=0D=0ABcc:_x@evil.example?=",
    "Acme =?utf-8?b?8J+UkiBTZWN1cml0eSBhbGVydA==?=",
]


@pytest.mark.parametrize("name", NAMES)
def test_an_invitation_names_the_organization_as_written(owner, organization, mailbox, name):
    Organization.objects.filter(pk=organization.pk).update(name=name)

    invite(owner, organization, mailbox, "newcomer@example.com")

    [mail] = mailbox.messages("newcomer@example.com")
    assert name in mail.subject
    assert "\u202e" not in mail.subject and "\n" not in mail.subject
    assert "Bcc" not in mail.message and "Security alert" not in mail.subject


@pytest.mark.parametrize("name", NAMES)
def test_a_notice_names_the_organization_as_written(mailbox, owner, project, name):
    Organization.objects.filter(pk=project.organization_id).update(name=name)
    make_key(KeyKind.SECRET, project=project, expires_at=timezone.now() + timedelta(days=5))

    call_command("send_notifications")

    [mail] = mailbox.messages(owner.email)
    assert mail.subject == f"An API key of {name} expires within 7 days"


#: A line break in a name, as a header injection tries it (and an empty line: a new body).
BROKEN = "Acme\r\nBcc: x@evil.example\r\n\r\nYour account is locked"


def test_a_name_with_a_line_break_is_refused(owner):
    response = user_client(owner).post("/v1/organizations", {"name": BROKEN}, format="json")

    assert response.status_code == 400
    assert list(error_fields(response)) == ["name"]
    assert not Organization.objects.filter(name__startswith="Acme\r").exists()


def test_a_stored_name_with_a_line_break_adds_no_header_nor_recipient(
    owner, organization, project, mailbox
):
    """One stored before the name rules, or written by an operator: the subject keeps it on
    one line, and nothing of it becomes a header or a recipient."""
    Organization.objects.filter(pk=organization.pk).update(name=BROKEN)
    invite(owner, organization, mailbox, "newcomer@example.com")
    make_key(KeyKind.SECRET, project=project, expires_at=timezone.now() + timedelta(days=5))
    call_command("send_notifications")

    received = mailbox.messages()
    assert {m.to for m in received} == {(owner.email,), ("newcomer@example.com",)}
    for mail in received:
        header_lines = mail.raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        assert not [line for line in header_lines if line.lower().startswith(b"bcc")]
        assert mail.message["Bcc"] is None
        assert set(mail.message.keys()) == {
            "Content-Type", "MIME-Version", "Subject", "From", "To", "Date",
            "Auto-Submitted", "X-Auto-Response-Suppress", "Message-ID",
        }  # fmt: skip
        assert "Acme Bcc: x@evil.example Your account is locked" in mail.subject
