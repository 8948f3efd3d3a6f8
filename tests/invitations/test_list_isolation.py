"""Pending invitations are read through the caller's organization only: the API list, the
members page and the cancel confirmation never show another organization's."""

from __future__ import annotations

import pytest

from apps.invitations.models import Invitation
from apps.invitations.services import invite_member
from apps.orgs.models import Membership
from tests.orgs.helpers import user_client
from tests.pages import html, logged_in

pytestmark = pytest.mark.django_db

OURS = "ours@example.com"
THEIRS = "their-newcomer@example.com"


def invitations_of_both(admin, organization, outsider) -> tuple[Invitation, Invitation]:
    """One invitation pending in the fixture organization (sent by its admin), one in the
    outsider's (sent by its owner)."""
    ours = invite_member(
        actor_membership=Membership.objects.get(organization=organization, user=admin),
        email=OURS,
        role="member",
    )
    theirs = invite_member(
        actor_membership=Membership.objects.get(user=outsider), email=THEIRS, role="member"
    )
    return ours, theirs


def test_an_admin_lists_their_organizations_invitations_and_never_anothers(
    admin, organization, outsider
):
    """Found by a mutation audit: `pending_invitations` without its
    `organization_id=membership.organization_id` went unnoticed. Every organization's
    pending invitations would then be listed to every owner and admin, on the API and on
    the members page: other tenants' invitees' addresses, roles and inviters."""
    ours, theirs = invitations_of_both(admin, organization, outsider)

    response = user_client(admin).get(f"/v1/organizations/{organization.id}/invitations")
    page = html(logged_in(admin).get(f"/orgs/{organization.id}/members/"))

    assert response.status_code == 200
    assert [i["id"] for i in response.json()["results"]] == [str(ours.id)]
    assert THEIRS not in response.content.decode()
    assert f'<tr data-invitation="{OURS}">' in page
    assert THEIRS not in page and str(theirs.id) not in page
    assert "1 pending invitation" in page


def test_the_cancel_confirmation_of_another_organizations_invitation_shows_nothing_of_it(
    admin, organization, outsider
):
    """Found by a mutation audit: with `pending_invitations` unscoped, an admin who posts
    to their own organization's cancel URL with another organization's invitation id (ids
    leak in links, logs and screenshots) would get the confirmation page asking "Cancel the
    invitation of <their invitee's address>?". It answers as for an invitation no longer
    pending, and the invitation stays pending."""
    _ours, theirs = invitations_of_both(admin, organization, outsider)
    client = logged_in(admin)
    url = f"/orgs/{organization.id}/invitations/{theirs.id}/cancel/"

    response = client.post(url)

    assert response.status_code == 302
    assert response["Location"] == f"/orgs/{organization.id}/members/"
    followed = html(client.get(response["Location"]))
    assert "That invitation was no longer pending." in followed
    assert THEIRS not in html(response) and THEIRS not in followed
    theirs.refresh_from_db()
    assert theirs.cancelled_at is None
