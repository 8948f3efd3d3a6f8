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
