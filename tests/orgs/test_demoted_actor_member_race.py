"""An admin demoted to member since their membership was read changes no one: the role is
read again under `_lock_for_change`'s locks, not taken from the row the caller holds."""

from __future__ import annotations

import pytest

from apps.audit.models import AuditEvent
from apps.orgs import services
from apps.orgs.models import Membership
from core.errors import PermissionDenied
from core.permissions import Role
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db


def demoted_since_read(organization, admin) -> Membership:
    """The admin's membership as the request read it (admin), demoted to member since."""
    actor = Membership.objects.get(organization=organization, user=admin)
    Membership.objects.filter(pk=actor.pk).update(role=Role.MEMBER)  # actor still says "admin"
    return actor


@pytest.mark.parametrize("change", ["change role", "remove"])
def test_an_admin_demoted_to_member_since_reading_its_membership_changes_no_member(
    owner, admin, organization, change
):
    """Found by a mutation audit: `_lock_for_change` without its re-check of the locked
    actor's role (`actor.role not in MANAGER_ROLES`) went unnoticed, since the tests demote
    owners to admins, whom the owners-only checks catch anyway. An admin demoted to member
    (or viewer) between the request's access check and the change's locks would still
    demote or remove members with the authority they lost. The locked row says member: the
    change is refused, the target is left as it was, and nothing is audited in their name."""
    target = MembershipFactory(organization=organization, role=Role.MEMBER)
    actor = demoted_since_read(organization, admin)

    with pytest.raises(PermissionDenied):
        if change == "remove":
            services.remove_member(actor_membership=actor, target=target)
        else:
            services.change_member_role(actor_membership=actor, target=target, role=Role.VIEWER)

    assert Membership.objects.get(pk=target.pk).role == Role.MEMBER
    assert not AuditEvent.objects.filter(actor_user=admin).exists()
