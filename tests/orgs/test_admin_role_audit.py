"""The admin audits a member's role change from the role the member has, under a lock."""

from __future__ import annotations

import pytest

from apps.audit.models import AuditEvent
from apps.audit.services import Action
from apps.orgs.admin import save_membership
from apps.orgs.models import Membership
from core.permissions import Role
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_a_role_changed_by_the_api_since_the_admin_read_it_is_audited_from_what_it_is(
    organization, rf
):
    """Found by an audit-log audit: the admin took a member's role before from its form,
    read without a lock; the API's change committed in between made a second, identical
    `member.role_changed` (or one whose `from` was stale)."""
    operator = UserFactory(is_staff=True, is_superuser=True)
    membership = MembershipFactory(organization=organization, role=Role.ADMIN)
    request = rf.post("/admin/")
    request.user = operator
    Membership.objects.filter(pk=membership.pk).update(role=Role.VIEWER)  # the API, meanwhile

    membership.role = Role.VIEWER  # the operator's choice, on the form read as admin
    save_membership(request, membership, previous_role=Role.ADMIN)
    assert not AuditEvent.objects.filter(action=Action.MEMBER_ROLE_CHANGED).exists()

    membership.role = Role.MEMBER
    save_membership(request, membership, previous_role=Role.ADMIN)
    event = AuditEvent.objects.get(action=Action.MEMBER_ROLE_CHANGED)
    assert event.details == {"from": Role.VIEWER, "to": Role.MEMBER}
