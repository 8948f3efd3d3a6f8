"""A user already in MAX_ORGANIZATIONS_PER_USER organizations creates no more (a bounds
audit: `create_org_user` bounds a day, 20, not a year, and each organization has its own
projects, keys, webhooks and invitations). One more is a `400 VALIDATION_ERROR` on `name`;
being added to one is not refused (another organization's choice); creations at the same
moment wait for each other on the account's row, so the bound is exact."""

from __future__ import annotations

import pytest

from apps.orgs import services as org_services
from apps.orgs.models import Membership, Organization
from core.permissions import Role
from tests.orgs.helpers import error_fields, user_client
from tests.races import race_for_the_last_place

MAX_ORGANIZATIONS = org_services.MAX_ORGANIZATIONS_PER_USER


def join_organizations(user, count: int) -> None:
    """More organizations of `user`, up to `count` in all."""
    count -= Membership.objects.filter(user=user).count()
    made = Organization.objects.bulk_create(
        (Organization(name=f"Org{n:04}") for n in range(count)), batch_size=1000
    )
    Membership.objects.bulk_create(
        (Membership(organization=o, user=user, role=Role.MEMBER) for o in made), batch_size=1000
    )


@pytest.mark.django_db
def test_a_user_in_as_many_organizations_as_the_bound_creates_no_more(outsider):
    join_organizations(outsider, MAX_ORGANIZATIONS - 1)
    client = user_client(outsider)

    last = client.post("/v1/organizations", {"name": "Last"}, format="json")
    refused = client.post("/v1/organizations", {"name": "One more"}, format="json")

    assert last.status_code == 201, last.json()
    assert refused.status_code == 400
    assert error_fields(refused)["name"] == [
        f"At most {MAX_ORGANIZATIONS:,} organizations per user: leave one first."
    ]
    assert Membership.objects.filter(user=outsider).count() == MAX_ORGANIZATIONS
    assert not Organization.objects.filter(name="One more").exists()


@pytest.mark.django_db
def test_a_user_at_the_organizations_bound_can_still_be_added_to_one(owner, organization, outsider):
    join_organizations(outsider, MAX_ORGANIZATIONS)
    response = user_client(owner).post(
        f"/v1/organizations/{organization.id}/members",
        {"email": outsider.email, "role": "member"},
        format="json",
    )
    assert response.status_code == 201, response.json()


@pytest.mark.django_db(transaction=True)
def test_two_organizations_created_with_room_for_one_make_one(outsider):
    join_organizations(outsider, MAX_ORGANIZATIONS - 1)
    client = user_client(outsider)

    def create():
        return client.post("/v1/organizations", {"name": "Racing"}, format="json")

    first, second = race_for_the_last_place(
        create, create, held_after='INSERT INTO "orgs_organization"'
    )

    assert (first.status_code, second.status_code) == (201, 400)
    assert Membership.objects.filter(user=outsider).count() == MAX_ORGANIZATIONS
