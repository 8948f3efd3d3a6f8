"""The admin's "an organization keeps an owner" against a change the API is making at the
same moment (PostgreSQL only: SQLite serialises writers, so the race cannot happen there).

The API demotes owner B and holds its owner locks; an operator demotes owner A, or deletes
A's membership or user, meanwhile. The admin's check waits for the API's lock and reads
the owners as they are after it: B is no longer one, so taking A away is refused.
"""

from __future__ import annotations

from functools import partial

import pytest
from django.contrib.admin import site
from django.core.exceptions import PermissionDenied
from django.test import Client

from apps.accounts.models import User
from apps.orgs import services as org_services
from apps.orgs.admin import LAST_OWNER_MESSAGE
from apps.orgs.models import Membership
from core.permissions import Role
from tests.factories import MembershipFactory, OrganizationFactory, UserFactory
from tests.races import Call, race
from tests.reliability.conftest import requires_postgres

pytestmark = [requires_postgres, pytest.mark.slow]

DEMOTION = 'UPDATE "orgs_membership" SET "role"'


def while_the_api_demotes(owner_b: Membership, by: Membership, operator_action):
    """Run `operator_action` while the API's demotion of B holds its locks (held just
    after its write), and commit the demotion once the operator's request waits on them.
    The action's result."""
    demotion = Call(
        partial(
            org_services.change_member_role, actor_membership=by, target=owner_b, role=Role.ADMIN
        ),
        held_after=DEMOTION,
    )
    operator = Call(operator_action)

    race(demotion, operator, second_waits=True)

    assert demotion.error is None and operator.error is None, (demotion.error, operator.error)
    return operator.result


@pytest.fixture
def two_owners(transactional_db):
    organization = OrganizationFactory()
    owner_a = MembershipFactory(organization=organization, role=Role.OWNER)
    owner_b = MembershipFactory(organization=organization, role=Role.OWNER)
    operator = Client()
    operator.force_login(UserFactory(is_staff=True, is_superuser=True))
    return organization, owner_a, owner_b, operator


def owners_of(organization) -> list[Membership]:
    return list(Membership.objects.filter(organization=organization, role=Role.OWNER))


def test_an_operator_demoting_an_owner_while_the_api_demotes_the_other_is_refused(two_owners):
    organization, owner_a, owner_b, operator = two_owners
    url = f"/admin/orgs/membership/{owner_a.pk}/change/"

    response = while_the_api_demotes(
        owner_b, owner_a, lambda: operator.post(url, {"role": Role.ADMIN, "_save": "1"})
    )

    assert response.status_code == 200
    assert LAST_OWNER_MESSAGE in response.content.decode()
    assert owners_of(organization) == [owner_a]


def test_an_operator_demoting_an_owner_inline_while_the_api_demotes_the_other_is_refused(
    two_owners,
):
    organization, owner_a, owner_b, operator = two_owners
    url = f"/admin/orgs/organization/{organization.pk}/change/"
    rows = [owner_a, owner_b]
    form = {
        "name": organization.name,
        "memberships-TOTAL_FORMS": "2",
        "memberships-INITIAL_FORMS": "2",
        "projects-TOTAL_FORMS": "0",
        "projects-INITIAL_FORMS": "0",
        "_save": "1",
    }
    for index, membership in enumerate(rows):  # as drawn: both owners; A demoted
        form |= {
            f"memberships-{index}-id": str(membership.pk),
            f"memberships-{index}-organization": str(organization.pk),
            f"memberships-{index}-user": str(membership.user_id),
            f"memberships-{index}-role": Role.ADMIN if membership == owner_a else Role.OWNER,
        }

    response = while_the_api_demotes(owner_b, owner_a, lambda: operator.post(url, form))

    assert response.status_code == 200
    assert LAST_OWNER_MESSAGE in response.content.decode()
    assert owners_of(organization) == [owner_a]


@pytest.mark.parametrize("what", ["membership", "user"])
def test_an_operator_deleting_an_owner_while_the_api_demotes_the_other_is_refused(two_owners, what):
    organization, owner_a, owner_b, operator = two_owners
    if what == "membership":
        url = "/admin/orgs/membership/"
        selected = owner_a.pk
    else:
        url = "/admin/accounts/user/"
        selected = owner_a.user_id
    body = {"action": "delete_selected", "_selected_action": [selected], "post": "yes"}

    response = while_the_api_demotes(owner_b, owner_a, lambda: operator.post(url, body))

    assert response.status_code == 200  # Django's "cannot delete" page, naming the reason
    assert "its last owner" in response.content.decode()
    assert owners_of(organization) == [owner_a]
    assert User.objects.filter(pk=owner_a.user_id).exists()


@pytest.mark.parametrize("what", ["membership", "user"])
def test_the_bulk_delete_checks_again_at_the_delete(two_owners, rf, what):
    """Django's bulk delete shows its confirmation, then deletes in another step: an owner
    demoted in between (B, through the API) is seen by the delete's own locked check."""
    organization, owner_a, owner_b, _operator = two_owners
    org_services.change_member_role(actor_membership=owner_a, target=owner_b, role=Role.ADMIN)
    request = rf.post("/admin/")
    request.user = UserFactory(is_staff=True, is_superuser=True)
    if what == "membership":
        model_admin, selected = (
            site.get_model_admin(Membership),
            Membership.objects.filter(pk=owner_a.pk),
        )
    else:
        model_admin, selected = site.get_model_admin(User), User.objects.filter(pk=owner_a.user_id)

    with pytest.raises(PermissionDenied):
        model_admin.delete_queryset(request, selected)

    assert owners_of(organization) == [owner_a]
