"""An organization holds at most MAX_PENDING_INVITATIONS_PER_ORGANIZATION pending
invitations (a bounds audit: `invite_org`'s 50 an hour held up to 8,400, each an email sent
and a link that works for 7 days). One more is a `400 VALIDATION_ERROR` on `email` and
sends nothing; inviting an address already invited replaces its invitation, so it is not
refused; accepted, cancelled and expired ones do not count; invitations at the same moment
wait for each other, so the bound is exact."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.invitations import services
from apps.invitations.models import Invitation
from apps.invitations.selectors import pending_at, token_digest
from tests.orgs.helpers import error_fields, user_client
from tests.pages import html, logged_in
from tests.races import race_for_the_last_place

MAX_PENDING = services.MAX_PENDING_INVITATIONS_PER_ORGANIZATION
FULL = f"At most {MAX_PENDING:,} pending invitations per organization: cancel some first."


def invitations(organization, inviter, count: int, prefix: str = "waiting", **fields) -> None:
    """`count` invitations of `organization`, pending unless `fields` say otherwise."""
    now = timezone.now()
    Invitation.objects.bulk_create(
        Invitation(
            **{
                "organization": organization,
                "email": f"{prefix}{n:04}@example.com",
                "normalized_email": f"{prefix}{n:04}@example.com",
                "role": "member",
                "invited_by": inviter,
                "token_digest": token_digest(f"{prefix}-{n}"),
                "created_at": now,
                "expires_at": now + timedelta(days=7),
            }
            | fields
        )
        for n in range(count)
    )


def pending_count(organization) -> int:
    return Invitation.objects.filter(pending_at(timezone.now()), organization=organization).count()


def invite(client, organization, email):
    path = f"/v1/organizations/{organization.id}/invitations"
    return client.post(path, {"email": email, "role": "member"}, format="json")


@pytest.mark.django_db
def test_an_organization_at_its_pending_bound_invites_no_more(owner, organization, mailbox):
    invitations(organization, owner, MAX_PENDING - 1)
    client = user_client(owner)

    last = invite(client, organization, "last@example.com")
    refused = invite(client, organization, "one-more@example.com")

    assert last.status_code == 201, last.json()
    assert refused.status_code == 400
    assert error_fields(refused)["email"] == [FULL]
    assert pending_count(organization) == MAX_PENDING
    assert not Invitation.objects.filter(normalized_email="one-more@example.com").exists()


@pytest.mark.django_db
def test_at_the_bound_an_address_already_invited_is_invited_again(owner, organization, mailbox):
    invitations(organization, owner, MAX_PENDING)
    response = invite(user_client(owner), organization, "waiting0007@example.com")
    assert response.status_code == 201, response.json()
    assert pending_count(organization) == MAX_PENDING


@pytest.mark.django_db
def test_finished_invitations_do_not_count(owner, organization, mailbox):
    now = timezone.now()
    invitations(organization, owner, MAX_PENDING - 1)
    invitations(organization, owner, 1, "cancelled", cancelled_at=now)
    invitations(organization, owner, 1, "expired", expires_at=now - timedelta(seconds=1))
    response = invite(user_client(owner), organization, "last@example.com")
    assert response.status_code == 201, response.json()


@pytest.mark.django_db
def test_the_dashboard_shows_the_bound_next_to_the_address(owner, organization, mailbox):
    invitations(organization, owner, MAX_PENDING)
    response = logged_in(owner).post(
        f"/orgs/{organization.id}/invitations/", {"email": "more@example.com", "role": "member"}
    )
    assert response.status_code == 200
    assert FULL in html(response)
    assert not Invitation.objects.filter(normalized_email="more@example.com").exists()


@pytest.mark.django_db(transaction=True)
def test_two_invitations_with_room_for_one_make_one(owner, organization, mailbox):
    invitations(organization, owner, MAX_PENDING - 1)
    client = user_client(owner)
    first, second = race_for_the_last_place(
        lambda: invite(client, organization, "first@example.com"),
        lambda: invite(client, organization, "second@example.com"),
        held_after='INSERT INTO "invitations_invitation"',
    )

    assert (first.status_code, second.status_code) == (201, 400)
    assert pending_count(organization) == MAX_PENDING
