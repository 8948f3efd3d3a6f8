"""Role changes that meet a promotion's commit take turns, never deadlock.

Found by a race audit (PostgreSQL; SQLite runs one writer at a time): owners x < o2 < o3
by id, x an admin. P, o3 promoting x, holds its locks; A, o2 demoting x, waits for the
owners' locks P holds, and once P commits holds the owners of before P ({o2, o3}); B, o3
demoting o2, locks the owners of after P in id order: x, then waits for o2, which A holds;
A went on to lock x, its target, in a second statement, which B holds: a deadlock, and
one of them a 503. A change now locks the owners, actor and target in one statement, in
id order.
"""

from __future__ import annotations

import time
from functools import partial

import pytest

from apps.orgs import services as org_services
from apps.orgs.models import Membership
from core.permissions import Role
from tests.factories import MembershipFactory, OrganizationFactory
from tests.races import Call, waits_for_a_lock
from tests.reliability.conftest import requires_postgres

pytestmark = [requires_postgres, pytest.mark.slow]


def change(actor: Membership, target: Membership, role: str) -> Call:
    return partial(
        org_services.change_member_role, actor_membership=actor, target=target, role=role
    )


def locks_memberships(sql: str) -> bool:
    """The first lock a change takes on memberships (the owners, with actor and target)."""
    return sql.startswith("SELECT") and 'FROM "orgs_membership"' in sql and "FOR UPDATE" in sql


def until_it_waits(call: Call) -> None:
    assert call.connected.wait(timeout=5)
    deadline = time.monotonic() + 5
    while not waits_for_a_lock(call.pid):
        assert call.is_alive(), call.error
        assert time.monotonic() < deadline, "never waited for a lock"
        time.sleep(0.01)


def test_changes_meeting_a_promotion_take_turns_and_never_deadlock(transactional_db):
    organization = OrganizationFactory()
    x, o2, o3 = sorted(
        [
            MembershipFactory(organization=organization, role=Role.ADMIN),
            MembershipFactory(organization=organization, role=Role.OWNER),
            MembershipFactory(organization=organization, role=Role.OWNER),
        ],
        key=lambda m: m.pk,
    )
    # The ids decide the lock order: x must be the first of the three.
    Membership.objects.filter(pk=x.pk).update(role=Role.ADMIN)
    Membership.objects.filter(pk__in=[o2.pk, o3.pk]).update(role=Role.OWNER)
    x.role, o2.role, o3.role = Role.ADMIN, Role.OWNER, Role.OWNER

    promotion = Call(change(o3, x, Role.OWNER), held_after=locks_memberships)
    promotion.start()
    assert promotion.held.wait(timeout=5), promotion.error
    demote_x = Call(change(o2, x, Role.MEMBER), held_after=locks_memberships)
    demote_x.start()
    until_it_waits(demote_x)
    promotion.let_go()
    promotion.join(timeout=5)
    assert demote_x.held.wait(timeout=5), demote_x.error
    demote_o2 = Call(change(o3, o2, Role.ADMIN))
    demote_o2.start()
    until_it_waits(demote_o2)
    demote_x.let_go()
    demote_x.join(timeout=10)
    demote_o2.join(timeout=10)

    errors = [promotion.error, demote_x.error, demote_o2.error]
    assert errors == [None, None, None], errors
    roles = dict(Membership.objects.filter(organization=organization).values_list("pk", "role"))
    assert roles == {x.pk: Role.MEMBER, o2.pk: Role.ADMIN, o3.pk: Role.OWNER}
