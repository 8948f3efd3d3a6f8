"""User-chosen names in an email's subject and plain-text part are isolated as its HTML's
`<bdi>` isolates them (U+2068 … U+2069, `core.mail.name_in_text`).

Found by an email audit: the HTML part isolated the organization's name, but the subject
and the plain text did not, so a right-to-left name took the words after it along (a
client showed "You are invited to join SigSentry on <name>"), a key list line that starts
with a right-to-left key name turned the whole line right to left, and a name stored
before the name rules with an unclosed override (U+202E) reversed the rest of the subject.
Read back from a real SMTP server (aiosmtpd) with Python's mail parser.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from apps.apikeys.keyformat import KeyKind
from apps.orgs.models import Organization
from apps.projects.models import Project
from core.mail import name_in_text
from tests.factories import make_key
from tests.invitations.test_views import invite

pytestmark = pytest.mark.django_db

ARABIC = "شركة النور"  # "Al-Nour company": right-to-left letters, no control character
OVERRIDE = "Acme \u202egnp.exe"  # an unclosed right-to-left override, stored before the rules
FSI, PDI = "\u2068", "\u2069"


@pytest.mark.parametrize("name", [ARABIC, OVERRIDE, "Acme \u2067x", "Build ١٢"])
def test_a_name_that_can_reorder_its_sentence_is_isolated(name):
    assert name_in_text(name) == f"{FSI}{name}{PDI}"


@pytest.mark.parametrize("name", ["Acme", "Crème brûlée 2027", "日本の会社", "!!!", ""])
def test_a_name_that_reads_the_same_either_way_is_left_bare(name):
    """Subjects people filter their mail on stay as they were."""
    assert name_in_text(name) == name


@pytest.mark.parametrize("name", [ARABIC, OVERRIDE])
def test_an_invitation_isolates_the_organizations_name_in_subject_and_plain_text(
    owner, organization, mailbox, name
):
    Organization.objects.filter(pk=organization.pk).update(name=name)

    invite(owner, organization, mailbox, "newcomer@example.com")

    [mail] = mailbox.messages("newcomer@example.com")
    isolated = f"{FSI}{name}{PDI}"
    assert mail.subject == f"You are invited to join {isolated} on SigSentry"
    assert mail.text.splitlines()[0] == f"Join {isolated} on SigSentry"
    assert f"to join the organization {isolated} as Member." in mail.text
    assert f"<title>Join {isolated} on SigSentry</title>" in mail.html
    assert f"<bdi>{name}</bdi>" in mail.html


def test_a_notice_isolates_every_name_in_subject_and_plain_text(mailbox, owner, project):
    Organization.objects.filter(pk=project.organization_id).update(name=OVERRIDE)
    Project.objects.filter(pk=project.pk).update(name=ARABIC)
    api_key, _ = make_key(
        KeyKind.SECRET,
        project=project,
        name="مفتاح الدفع",
        expires_at=timezone.now() + timedelta(days=5),
    )

    call_command("send_notifications")

    [mail] = mailbox.messages(owner.email)
    assert mail.subject == f"An API key of {FSI}{OVERRIDE}{PDI} expires within 7 days"
    key_line = next(line for line in mail.text.splitlines() if api_key.prefix in line)
    assert key_line.startswith(f"* {FSI}مفتاح الدفع{PDI} ({api_key.prefix}…), {FSI}{ARABIC}{PDI},")
    assert f"SigSentry, for the organization {FSI}{OVERRIDE}{PDI}." in mail.text
    assert "<bdi>مفتاح الدفع</bdi></a>" in mail.html
    assert f"<bdi>{ARABIC}</bdi></td>" in mail.html


def test_a_notice_about_a_latin_named_organization_keeps_its_subject_as_it_was(
    mailbox, owner, project
):
    make_key(KeyKind.SECRET, project=project, expires_at=timezone.now() + timedelta(days=5))

    call_command("send_notifications")

    [mail] = mailbox.messages(owner.email)
    assert mail.subject == "An API key of Acme expires within 7 days"
    assert FSI not in mail.text and FSI not in mail.html


def test_a_subject_in_another_script_starts_on_the_subject_line(owner, organization, mailbox):
    """Django encoded it with its first line empty (`Subject: ` and the words folded onto
    the next): readers that keep the folding's space showed the subject indented."""
    Organization.objects.filter(pk=organization.pk).update(name="日本の会社")

    invite(owner, organization, mailbox, "newcomer@example.com")

    [mail] = mailbox.messages("newcomer@example.com")
    assert mail.subject == "You are invited to join 日本の会社 on SigSentry"
    [subject_line] = [line for line in mail.raw.split(b"\r\n") if line.startswith(b"Subject:")]
    assert subject_line.startswith(b"Subject: =?utf-8?")
