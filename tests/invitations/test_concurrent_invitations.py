"""Invitations sent or accepted twice at the same moment (SPEC §4.13).

Inviting an address again replaces its pending invitation, and accepting twice is
harmless: both must hold when the two requests overlap, not only one after the other.
Each race is staged, not hoped for: the first call is held inside its transaction
just after its write, the second starts and either finishes or waits for a lock, and
only then is the first let go.

PostgreSQL only: SQLite serialises every writer, so the race cannot happen there.
"""

from __future__ import annotations

import re
from functools import partial

import pytest
from django.core import mail
from django.db import connection

from apps.audit.models import AuditEvent
from apps.invitations import services
from apps.invitations.models import Invitation
from apps.orgs.models import Membership
from core.errors import NotFound
from core.permissions import Role
from tests.factories import UserFactory
from tests.races import Call, race

pytestmark = pytest.mark.django_db(transaction=True)

INVITATIONS = 'INSERT INTO "invitations_invitation"'
ACCEPTANCE = 'UPDATE "invitations_invitation" SET "accepted_at"'
TOKEN = re.compile(r"/invitations/([A-Za-z0-9_-]+)/")


@pytest.fixture(autouse=True)
def _concurrent_database():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: row locks and concurrent writers")


def pending(organization, address: str) -> list[Invitation]:
    return list(
        Invitation.objects.filter(
            organization=organization,
            normalized_email=address,
            accepted_at__isnull=True,
            cancelled_at__isnull=True,
        )
    )


def test_two_simultaneous_invitations_of_one_address_leave_one_pending(organization, owner):
    inviter = Membership.objects.get(organization=organization, user=owner)
    invite = partial(services.invite_member, actor_membership=inviter, role=Role.MEMBER)
    first = Call(partial(invite, email="newcomer@example.com"), held_after=INVITATIONS)
    second = Call(partial(invite, email="Newcomer@example.com"))

    race(first, second)

    assert first.error is None and second.error is None, (first.error, second.error)
    assert [i.id for i in pending(organization, "newcomer@example.com")] == [second.result.id]
    replaced = Invitation.objects.get(pk=first.result.id)
    assert replaced.cancelled_at is not None and replaced.accepted_at is None
    assert AuditEvent.objects.filter(action="member.invited").count() == 2
    cancellations = AuditEvent.objects.filter(action="member.invitation_cancelled")
    assert [(e.target_id, e.details["reason"]) for e in cancellations] == [
        (str(first.result.id), "replaced")
    ]


def test_a_replaced_invitations_link_dies_when_both_were_sent_at_once(organization, owner):
    inviter = Membership.objects.get(organization=organization, user=owner)
    invite = partial(services.invite_member, actor_membership=inviter, email="newcomer@example.com")
    first = Call(partial(invite, role=Role.ADMIN), held_after=INVITATIONS)
    second = Call(partial(invite, role=Role.VIEWER))
    race(first, second)
    assert first.error is None and second.error is None, (first.error, second.error)
    tokens = [TOKEN.search(message.body).group(1) for message in mail.outbox]
    assert len(set(tokens)) == 2
    newcomer = UserFactory(email="newcomer@example.com")

    answers = []
    for token in tokens:
        try:
            answers.append(services.accept_invitation(user=newcomer, token=token).role)
        except NotFound:
            answers.append("404")

    assert sorted(answers) == ["404", Role.VIEWER]


def test_two_simultaneous_accepts_by_the_invitee_answer_the_same_membership(organization, owner):
    inviter = Membership.objects.get(organization=organization, user=owner)
    services.invite_member(actor_membership=inviter, email="newcomer@example.com", role="admin")
    token = TOKEN.search(mail.outbox[-1].body).group(1)
    newcomer = UserFactory(email="newcomer@example.com")
    accept = partial(services.accept_invitation, user=newcomer, token=token)
    first = Call(accept, held_after=ACCEPTANCE)
    second = Call(accept)

    race(first, second)

    assert first.error is None and second.error is None, (first.error, second.error)
    assert first.result.pk == second.result.pk
    assert second.result.role == Role.ADMIN
    assert second.result.organization.name == organization.name
    assert Membership.objects.filter(organization=organization, user=newcomer).count() == 1
    assert AuditEvent.objects.filter(action="member.added", target_id=newcomer.pk).count() == 1
