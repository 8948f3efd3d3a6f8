"""An invitation grants its role only while its inviter may still grant it.

An owner about to be removed could otherwise invite their own second address as
owner and, once removed, accept and be owner again. Removing, demoting or
deactivating the inviter cancels the invitations they could no longer send (audited,
in the same transaction), and accepting checks the inviter again for any left pending.
"""

from __future__ import annotations

import pytest
from django.test import Client

from apps.accounts import services as account_services
from apps.accounts.models import User
from apps.audit.models import AuditEvent
from apps.invitations import services as invitation_services
from apps.invitations.models import Invitation
from apps.orgs.admin import delete_membership, save_membership
from apps.orgs.models import Membership
from core.errors import ApiError
from core.permissions import Role
from tests.factories import MembershipFactory, UserFactory
from tests.invitations.test_api import accept, invitations_url, invite, token_from
from tests.invitations.test_pending_page import pending
from tests.orgs.helpers import error_code, user_client
from tests.pages import CONFIRMED, html, logged_in

pytestmark = pytest.mark.django_db


def member_url(organization, user) -> str:
    return f"/v1/organizations/{organization.id}/members/{user.id}"


def another(organization, role: str) -> User:
    return MembershipFactory(organization=organization, role=role).user


def sent(client, organization, mailbox, email: str, role: str) -> tuple[str, str]:
    """Invite `email` as `role`; the invitation's id and the token of its email."""
    response = invite(client, organization, email, role=role)
    assert response.status_code == 201, response.json()
    return response.json()["id"], token_from(mailbox.messages(email)[0])


def cancelled_answer(owner, organization, mailbox):
    """What accepting an invitation cancelled by hand answers: the reference."""
    client = user_client(owner)
    invitation_id, token = sent(client, organization, mailbox, "cancelled@example.com", "viewer")
    assert client.delete(f"{invitations_url(organization)}/{invitation_id}").status_code == 204
    response = accept(UserFactory(email="cancelled@example.com"), token)
    assert response.status_code == 404
    return response.json()


def cancellations(invitation_id: str) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(action="member.invitation_cancelled", target_id=invitation_id)
    )


def test_a_removed_owner_cannot_come_back_through_their_own_invitation(
    owner, organization, mailbox
):
    co_owner = another(organization, Role.OWNER)
    reference = cancelled_answer(co_owner, organization, mailbox)
    invitation_id, token = sent(
        user_client(owner), organization, mailbox, "me-again@example.com", "owner"
    )

    removed = user_client(co_owner).delete(member_url(organization, owner))

    assert removed.status_code == 204
    assert Invitation.objects.get(id=invitation_id).cancelled_at is not None
    [event] = cancellations(invitation_id)
    assert event.actor_user == co_owner and event.target_label == "me-again@example.com"
    assert event.details == {"role": "owner", "reason": "inviter_removed"}
    listed = user_client(co_owner).get(invitations_url(organization)).json()["results"]
    assert invitation_id not in [r["id"] for r in listed]
    second_address = UserFactory(email="me-again@example.com")
    response = accept(second_address, token)
    assert response.status_code == 404 and response.json() == reference
    assert not Membership.objects.filter(organization=organization, user=second_address).exists()


def test_the_members_page_no_longer_lists_a_removed_inviters_invitation(
    owner, organization, mailbox
):
    co_owner = another(organization, Role.OWNER)
    sent(user_client(owner), organization, mailbox, "me-again@example.com", "owner")
    page = logged_in(co_owner)
    members_page = f"/orgs/{organization.id}/members/"
    assert '<tr data-invitation="me-again@example.com">' in html(page.get(members_page))

    response = page.post(f"/orgs/{organization.id}/members/{owner.id}/remove/", CONFIRMED)

    assert response.status_code == 302
    assert "me-again@example.com" not in html(page.get(members_page))


def test_leaving_the_organization_cancels_ones_own_invitations(owner, organization, mailbox):
    client = user_client(owner)
    invitation_id, token = sent(client, organization, mailbox, "me-again@example.com", "owner")
    refused = client.delete(member_url(organization, owner))
    assert refused.status_code == 409 and error_code(refused) == "LAST_OWNER"
    assert Invitation.objects.get(id=invitation_id).cancelled_at is None  # nothing changed
    another(organization, Role.OWNER)

    assert client.delete(member_url(organization, owner)).status_code == 204

    [event] = cancellations(invitation_id)
    assert event.actor_user == owner and event.details["reason"] == "inviter_removed"
    assert accept(UserFactory(email="me-again@example.com"), token).status_code == 404


def test_a_demoted_admins_invitations_are_cancelled(owner, admin, organization, mailbox):
    other_admin = another(organization, Role.ADMIN)
    theirs = [
        sent(user_client(admin), organization, mailbox, f"{role}@example.com", role)
        for role in ("admin", "member", "viewer")
    ]
    kept_id, kept_token = sent(
        user_client(other_admin), organization, mailbox, "kept@example.com", "member"
    )

    response = user_client(owner).patch(
        member_url(organization, admin), {"role": "member"}, format="json"
    )

    assert response.status_code == 200
    for (invitation_id, token), role in zip(theirs, ("admin", "member", "viewer"), strict=True):
        [event] = cancellations(invitation_id)
        assert event.actor_user == owner
        assert event.details == {"role": role, "reason": "inviter_role_changed"}
        invitee = UserFactory(email=f"{role}@example.com")
        answer = accept(invitee, token)
        assert answer.status_code == 404 and error_code(answer) == "NOT_FOUND"
    # Another admin's invitation is theirs to keep.
    assert cancellations(kept_id) == []
    assert accept(UserFactory(email="kept@example.com"), kept_token).status_code == 200


def test_a_demotion_keeps_the_invitations_the_new_role_may_still_send(owner, organization, mailbox):
    co_owner = another(organization, Role.OWNER)
    client = user_client(owner)
    owner_id, owner_token = sent(client, organization, mailbox, "boss@example.com", "owner")
    member_id, member_token = sent(client, organization, mailbox, "staff@example.com", "member")

    response = user_client(co_owner).patch(
        member_url(organization, owner), {"role": "admin"}, format="json"
    )

    assert response.status_code == 200
    assert Invitation.objects.get(id=owner_id).cancelled_at is not None
    assert Invitation.objects.get(id=member_id).cancelled_at is None
    assert [
        e.details["role"] for e in AuditEvent.objects.filter(action="member.invitation_cancelled")
    ] == ["owner"]
    listed = user_client(co_owner).get(invitations_url(organization)).json()["results"]
    assert [r["id"] for r in listed] == [member_id]
    assert accept(UserFactory(email="boss@example.com"), owner_token).status_code == 404
    staff = UserFactory(email="staff@example.com")
    assert accept(staff, member_token).json()["role"] == "member"


def test_deactivating_an_inviter_cancels_their_pending_invitations(
    owner, admin, organization, mailbox
):
    reference = cancelled_answer(owner, organization, mailbox)
    theirs_id, theirs_token = sent(
        user_client(admin), organization, mailbox, "staff@example.com", "member"
    )
    kept_id, kept_token = sent(
        user_client(owner), organization, mailbox, "kept@example.com", "member"
    )
    operator = UserFactory(is_staff=True)

    account_services.deactivate_user(user=admin, actor_user=operator)

    assert Invitation.objects.get(id=theirs_id).cancelled_at is not None
    [event] = cancellations(theirs_id)
    assert event.actor_user == operator and event.target_label == "staff@example.com"
    assert event.details == {"role": "member", "reason": "inviter_deactivated"}
    listed = user_client(owner).get(invitations_url(organization)).json()["results"]
    assert [r["id"] for r in listed] == [kept_id]
    response = accept(UserFactory(email="staff@example.com"), theirs_token)
    assert response.status_code == 404 and response.json() == reference
    # Another manager's invitation is theirs to keep.
    assert cancellations(kept_id) == []
    assert accept(UserFactory(email="kept@example.com"), kept_token).status_code == 200


def test_a_deactivation_and_its_cancellations_are_written_together(
    owner, admin, organization, mailbox, monkeypatch
):
    invitation_id, _token = sent(
        user_client(admin), organization, mailbox, "staff@example.com", "member"
    )

    def audit_fails(*args, **kwargs):
        raise RuntimeError("audit log unavailable")

    monkeypatch.setattr(invitation_services, "record_events", audit_fails)
    with pytest.raises(RuntimeError):
        account_services.deactivate_user(user=admin)

    admin.refresh_from_db()
    assert admin.is_active
    assert Invitation.objects.get(id=invitation_id).cancelled_at is None
    assert not AuditEvent.objects.filter(action="member.invitation_cancelled").exists()


# Accepting checks the inviter again, whatever left the invitation pending ------------------


def test_an_admin_demoted_since_their_membership_was_read_cannot_invite(admin, organization):
    """The role is read again under the organization's lock: a demotion committed after the
    request read the membership counts (the object stands for that read)."""
    read_before = Membership.objects.get(organization=organization, user=admin)
    Membership.objects.filter(pk=read_before.pk).update(role=Role.MEMBER)

    with pytest.raises(ApiError):
        invitation_services.invite_member(
            actor_membership=read_before, email="new@example.com", role=Role.ADMIN
        )

    assert not Invitation.objects.exists()


def test_an_admin_demoted_since_their_membership_was_read_cannot_cancel(owner, admin, organization):
    invitation_services.invite_member(
        actor_membership=Membership.objects.get(organization=organization, user=owner),
        email="new@example.com",
        role=Role.VIEWER,
    )
    read_before = Membership.objects.get(organization=organization, user=admin)
    Membership.objects.filter(pk=read_before.pk).update(role=Role.MEMBER)

    with pytest.raises(ApiError):
        invitation_services.cancel_invitation(
            actor_membership=read_before, invitation_id=Invitation.objects.get().pk
        )

    assert Invitation.objects.get().cancelled_at is None


def test_accepting_refuses_what_a_demoted_inviter_may_no_longer_send(owner, organization, mailbox):
    co_owner = another(organization, Role.OWNER)
    reference = cancelled_answer(co_owner, organization, mailbox)
    client = user_client(owner)
    owner_id, owner_token = sent(client, organization, mailbox, "me-again@example.com", "owner")
    _member_id, member_token = sent(client, organization, mailbox, "staff@example.com", "member")
    # Around the service: nothing cancels the invitations.
    Membership.objects.filter(organization=organization, user=owner).update(role=Role.ADMIN)

    second_address = UserFactory(email="me-again@example.com")
    response = accept(second_address, owner_token)

    assert response.status_code == 404 and response.json() == reference
    assert not Membership.objects.filter(organization=organization, user=second_address).exists()
    invitation = Invitation.objects.get(id=owner_id)
    assert invitation.accepted_at is None and invitation.cancelled_at is None
    # An admin may still invite members: that one still works.
    assert accept(UserFactory(email="staff@example.com"), member_token).json()["role"] == "member"


@pytest.mark.parametrize("lapse", ["removed", "account_deleted", "account_deactivated"])
def test_accepting_refuses_an_invitation_whose_inviter_is_gone(lapse, owner, organization, mailbox):
    co_owner = another(organization, Role.OWNER)
    reference = cancelled_answer(co_owner, organization, mailbox)
    invitation_id, token = sent(
        user_client(owner), organization, mailbox, "staff@example.com", "member"
    )
    # Around the service: nothing cancels the invitation.
    if lapse == "removed":
        Membership.objects.filter(organization=organization, user=owner).delete()
    elif lapse == "account_deactivated":
        User.objects.filter(pk=owner.pk).update(is_active=False)
    else:
        owner.delete()  # the invitation stays, `invited_by` set to null
        assert Invitation.objects.get(id=invitation_id).invited_by is None
    assert Invitation.objects.get(id=invitation_id).cancelled_at is None

    staff = UserFactory(email="staff@example.com")
    response = accept(staff, token)

    assert response.status_code == 404 and response.json() == reference
    assert not Membership.objects.filter(organization=organization, user=staff).exists()
    assert Invitation.objects.get(id=invitation_id).accepted_at is None


def test_signing_up_from_a_lapsed_invitation_makes_no_account(owner, organization, mailbox):
    another(organization, Role.OWNER)
    _id, token = sent(user_client(owner), organization, mailbox, "me-again@example.com", "owner")
    Membership.objects.filter(organization=organization, user=owner).delete()

    response = Client().post(f"/invitations/{token}/", {"password": "newcomer-passphrase-2026"})

    assert response.status_code == 404 and "This invitation no longer works" in html(response)
    assert not User.objects.filter(email="me-again@example.com").exists()


def test_the_invitation_page_does_not_offer_a_lapsed_invitation(owner, organization, mailbox):
    another(organization, Role.OWNER)
    _id, token = sent(user_client(owner), organization, mailbox, "me-again@example.com", "owner")
    Membership.objects.filter(organization=organization, user=owner).delete()

    response = Client().get(f"/invitations/{token}/")

    assert response.status_code == 404 and "This invitation no longer works" in html(response)


@pytest.mark.parametrize("change", ["removed", "demoted"])
def test_an_operator_removing_or_demoting_an_inviter_in_the_admin_cancels_too(
    change, owner, organization, mailbox, rf
):
    another(organization, Role.OWNER)
    invitation_id, _token = sent(
        user_client(owner), organization, mailbox, "me-again@example.com", "owner"
    )
    request = rf.post("/admin/")
    request.user = UserFactory(is_staff=True, is_superuser=True)
    membership = Membership.objects.get(organization=organization, user=owner)

    if change == "removed":
        delete_membership(request, membership)
    else:
        membership.role = Role.ADMIN
        save_membership(request, membership, previous_role=Role.OWNER)

    assert Invitation.objects.get(id=invitation_id).cancelled_at is not None
    [event] = cancellations(invitation_id)
    assert event.actor_user_id == request.user.id


def test_many_cancellations_are_audited_in_one_statement(owner, admin, organization):
    """A large-tenant audit: demoting an admin with 1,900 pending invitations wrote 1,900
    audit INSERTs, 1.8 s inside the transaction that holds the organization's locks."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    pending(organization, admin, 30)

    with CaptureQueriesContext(connection) as queries:
        response = user_client(owner).patch(
            member_url(organization, admin), {"role": "viewer"}, format="json"
        )

    assert response.status_code == 200
    audit_table = AuditEvent._meta.db_table
    inserts = [q for q in queries if q["sql"].startswith(f'INSERT INTO "{audit_table}"')]
    assert len(inserts) == 2  # the cancellations at once, and the role change
    assert AuditEvent.objects.filter(action="member.invitation_cancelled").count() == 30
