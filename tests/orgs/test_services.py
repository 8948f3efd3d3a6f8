import pytest

from apps.orgs import services
from apps.orgs.models import Membership
from core.errors import PermissionDenied
from core.permissions import Role
from tests.factories import MembershipFactory, OrganizationFactory

pytestmark = pytest.mark.django_db


def _owners(n: int) -> list[Membership]:
    organization = OrganizationFactory()
    return [MembershipFactory(organization=organization, role=Role.OWNER) for _ in range(n)]


def test_an_actor_demoted_since_reading_its_membership_cannot_remove_an_owner():
    actor, target, _third = _owners(3)
    Membership.objects.filter(pk=actor.pk).update(role=Role.ADMIN)  # actor still says "owner"

    with pytest.raises(PermissionDenied):
        services.remove_member(actor_membership=actor, target=target)

    assert Membership.objects.filter(pk=target.pk, role=Role.OWNER).exists()


def test_an_actor_demoted_since_reading_its_membership_cannot_make_owners():
    actor, _other = _owners(2)
    member = MembershipFactory(organization=actor.organization, role=Role.MEMBER)
    Membership.objects.filter(pk=actor.pk).update(role=Role.ADMIN)

    with pytest.raises(PermissionDenied):
        services.change_member_role(actor_membership=actor, target=member, role=Role.OWNER)

    member.refresh_from_db()
    assert member.role == Role.MEMBER


def test_a_removed_actor_cannot_change_anyone():
    actor, _other = _owners(2)
    member = MembershipFactory(organization=actor.organization, role=Role.MEMBER)
    Membership.objects.filter(pk=actor.pk).delete()

    with pytest.raises(PermissionDenied):
        services.change_member_role(actor_membership=actor, target=member, role=Role.VIEWER)
