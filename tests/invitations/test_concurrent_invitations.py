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
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

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

pytestmark = pytest.mark.django_db(transaction=True)

INVITATIONS = 'INSERT INTO "invitations_invitation"'
ACCEPTANCE = 'UPDATE "invitations_invitation" SET "accepted_at"'
TOKEN = re.compile(r"/invitations/([A-Za-z0-9_-]+)/")


@pytest.fixture(autouse=True)
def _concurrent_database():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: row locks and concurrent writers")


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _waits_for_a_lock(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
        row = cursor.fetchone()
    return row is not None and row[0] == "Lock"


class Call(threading.Thread):
    """`fn` on a connection of its own; with `held_after`, held inside its transaction just
    after the first statement that starts with that text, until `let_go()`."""

    def __init__(self, fn: Callable[[], Any], held_after: str | None = None) -> None:
        super().__init__(daemon=True)
        self.fn, self.held_after = fn, held_after
        self.connected, self.held = threading.Event(), threading.Event()
        self._go = threading.Event()
        self.pid = 0
        self.result: Any = None
        self.error: Exception | None = None

    def _hold(self, execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if self.held_after and sql.startswith(self.held_after) and not self.held.is_set():
            self.held.set()
            self._go.wait(timeout=5)
        return result

    def run(self) -> None:
        try:
            self.pid = _backend_pid()
            self.connected.set()
            with connection.execute_wrapper(self._hold):
                self.result = self.fn()
        except Exception as exc:
            self.error = exc
        finally:
            connection.close()

    def let_go(self) -> None:
        self._go.set()


def race(first: Call, second: Call) -> None:
    """Hold `first` after its write, run `second` until it is done or waits for a lock,
    then let `first` finish; both are done on return."""
    first.start()
    assert first.held.wait(timeout=5), first.error
    second.start()
    assert second.connected.wait(timeout=5)
    deadline = time.monotonic() + 5
    while second.is_alive() and not _waits_for_a_lock(second.pid):
        assert time.monotonic() < deadline, "the second call neither finished nor waited"
        time.sleep(0.01)
    first.let_go()
    first.join(timeout=5)
    second.join(timeout=5)
    assert not first.is_alive() and not second.is_alive()


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
