"""Invitation pages: the members page's Invite form and pending list, and /invitations/<token>/."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from django.test import Client
from django.utils import timezone

from apps.accounts.cookies import ACCESS_COOKIE
from apps.accounts.models import User
from apps.invitations.models import Invitation
from apps.invitations.views import OPEN_PATH
from apps.orgs.models import Membership
from core.permissions import Role
from tests.factories import UserFactory
from tests.pages import CONFIRMED, assert_no_inline_code, html, logged_in

pytestmark = pytest.mark.django_db


def members_url(organization) -> str:
    return f"/orgs/{organization.id}/members/"


def invite_url(organization) -> str:
    return f"/orgs/{organization.id}/invitations/"


def invite(owner, organization, mailbox, email="newcomer@example.com", role="member") -> str:
    """Invite from the members page; returns the path of the emailed link."""
    response = logged_in(owner).post(invite_url(organization), {"email": email, "role": role})
    assert response.status_code == 302, html(response)
    [mail] = mailbox.messages(email.lower())
    return urlsplit(mail.link("/invitations/")).path


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_managers_see_the_invite_form_and_pending_list(request, role, organization, owner, mailbox):
    invite(owner, organization, mailbox, "waiting@example.com")
    page = html(logged_in(request.getfixturevalue(role)).get(members_url(organization)))
    assert f'action="{invite_url(organization)}"' in page and ">Invite</button>" in page
    assert '<tr data-invitation="waiting@example.com">' in page
    assert "1 pending invitation" in page
    assert_no_inline_code(page)


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_members_and_viewers_see_neither(request, role, organization, owner, mailbox):
    invite(owner, organization, mailbox, "waiting@example.com")
    page = html(logged_in(request.getfixturevalue(role)).get(members_url(organization)))
    assert "waiting@example.com" not in page and ">Invite</button>" not in page


def test_inviting_from_the_page_mails_and_lists(owner, organization, mailbox):
    client = logged_in(owner)
    response = client.post(
        invite_url(organization), {"email": "new@example.com", "role": "viewer"}, follow=True
    )
    page = html(response)
    assert "Invitation sent to new@example.com as Viewer." in page
    assert '<tr data-invitation="new@example.com">' in page
    assert len(mailbox.messages("new@example.com")) == 1


def test_page_invitation_errors_show_next_to_the_field(owner, member, organization):
    client = logged_in(owner)
    response = client.post(invite_url(organization), {"email": member.email, "role": "viewer"})
    assert response.status_code == 200
    assert 'id="id_email_error">This person is already a member.' in html(response)
    no_role = client.post(invite_url(organization), {"email": "x@example.com"})
    assert no_role.status_code == 200 and 'id="id_role_error"' in html(no_role)


def test_admins_are_not_offered_the_owner_role(admin, organization):
    client = logged_in(admin)
    page = html(client.get(members_url(organization)))
    form = page.split('id="invite-heading"')[1].split("</form>")[0]
    assert '<option value="owner"' not in form
    response = client.post(invite_url(organization), {"email": "x@example.com", "role": "owner"})
    assert response.status_code == 200 and not Invitation.objects.exists()


def test_cancelling_from_the_page(owner, organization, mailbox):
    path = invite(owner, organization, mailbox)
    invitation = Invitation.objects.get()
    client = logged_in(owner)
    response = client.post(
        f"{invite_url(organization)}{invitation.id}/cancel/", CONFIRMED, follow=True
    )
    assert "Invitation cancelled." in html(response)
    assert Client().get(path).status_code == 404


def test_outsiders_get_404_on_the_invitation_actions(owner, organization, outsider, mailbox):
    invite(owner, organization, mailbox)
    invitation = Invitation.objects.get()
    client = logged_in(outsider)
    body = {"email": "a@example.com", "role": "member"}
    assert client.post(invite_url(organization), body).status_code == 404
    assert (
        client.post(f"{invite_url(organization)}{invitation.id}/cancel/", CONFIRMED).status_code
        == 404
    )
    invitation.refresh_from_db()
    assert invitation.cancelled_at is None and Invitation.objects.count() == 1


def test_invitation_forms_need_the_csrf_token(owner, organization):
    client = logged_in(owner, Client(enforce_csrf_checks=True))
    response = client.post(invite_url(organization), {"email": "a@example.com", "role": "member"})
    assert response.status_code == 403 and not Invitation.objects.exists()


# The emailed link --------------------------------------------------------------------------


def test_signing_up_from_the_link_lands_in_the_organization(owner, organization, mailbox):
    path = invite(owner, organization, mailbox, role="admin")
    client = Client()
    page = html(client.get(path, follow=True))
    assert 'Join <span class="invite-org">Acme</span>' in page and "newcomer@example.com" in page
    assert_no_inline_code(page)

    weak = client.post(OPEN_PATH, {"password": "short"})
    assert weak.status_code == 200 and 'id="id_password_error"' in html(weak)
    response = client.post(OPEN_PATH, {"password": "newcomer-passphrase-2026"})

    assert response.status_code == 302 and response["Location"] == "/"
    assert response.cookies[ACCESS_COOKIE].value
    newcomer = User.objects.get(email="newcomer@example.com")
    assert Membership.objects.get(user=newcomer).organization == organization
    assert Membership.objects.get(user=newcomer).role == Role.ADMIN
    home = html(client.get("/"))
    assert "You joined <bdi>Acme</bdi> as Admin." in home
    assert client.get(path)["Location"] == "/"  # the invitee: already a member
    assert Client().get(path).status_code == 404  # anyone else: used


def test_an_existing_account_logs_in_then_accepts(owner, organization, mailbox):
    newcomer = UserFactory(email="newcomer@example.com")
    path = invite(owner, organization, mailbox)
    anonymous = html(Client().get(path, follow=True))
    assert 'href="/login/?next=%2Finvitations%2Fopen%2F"' in anonymous

    client = logged_in(newcomer)
    page = html(client.get(path, follow=True))
    assert "Accept invitation" in page
    response = client.post(OPEN_PATH)
    assert response.status_code == 302 and response["Location"] == "/"
    assert Membership.objects.filter(organization=organization, user=newcomer).exists()


def test_accepting_again_after_joining_says_so_not_invalid(owner, organization, mailbox):
    """A reload of the accept, a second click, the link opened again: the invitee joined,
    and is told so instead of "does not exist, has expired or was already used"."""
    newcomer = UserFactory(email="newcomer@example.com")
    path = invite(owner, organization, mailbox)
    client = logged_in(newcomer)
    assert client.post(path).status_code == 302

    for again in (client.post(path), client.get(path)):
        assert again.status_code == 302 and again["Location"] == "/"
    home = html(client.get("/", follow=True))
    assert f"You are a member of <bdi>{organization.name}</bdi>." in home
    assert Membership.objects.filter(organization=organization, user=newcomer).count() == 1
    elsewhere = logged_in(UserFactory(email="other@example.com")).get(path)
    assert elsewhere.status_code == 404  # anyone else: the link is used up


def test_signing_up_with_an_email_that_has_an_account_says_to_log_in(owner, organization, mailbox):
    UserFactory(email="newcomer@example.com")
    path = invite(owner, organization, mailbox)
    response = Client().post(path, {"password": "newcomer-passphrase-2026"})
    assert "An account already uses this email: log in to accept." in html(response)
    assert User.objects.filter(email="newcomer@example.com").count() == 1


def test_someone_else_logged_in_learns_nothing_and_cannot_accept(
    owner, organization, mailbox, outsider
):
    path = invite(owner, organization, mailbox)
    client = logged_in(outsider)
    page = html(client.get(path, follow=True))
    assert "This invitation is for someone else" in page
    assert "Acme" not in page and "newcomer@example.com" not in page
    client.post(path)
    assert not Membership.objects.filter(organization=organization, user=outsider).exists()
    assert Invitation.objects.get().accepted_at is None


def test_a_dead_link_says_so(owner, organization, mailbox):
    assert Client().get("/invitations/not-a-real-token/").status_code == 404
    path = invite(owner, organization, mailbox)
    Invitation.objects.update(cancelled_at=Invitation.objects.get().created_at)
    page = Client().get(path)
    assert page.status_code == 404 and "This invitation no longer works" in html(page)


def test_the_accept_form_needs_the_csrf_token(owner, organization, mailbox):
    path = invite(owner, organization, mailbox)
    client = Client(enforce_csrf_checks=True)
    assert client.post(path, {"password": "newcomer-passphrase-2026"}).status_code == 403
    assert not User.objects.filter(email="newcomer@example.com").exists()


def test_operators_see_invitations_but_never_their_digest(owner, organization, mailbox):
    invite(owner, organization, mailbox)
    invitation = Invitation.objects.get()
    staff = UserFactory(is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(staff)
    listing = client.get("/admin/invitations/invitation/")
    assert listing.status_code == 200 and "newcomer@example.com" in html(listing)
    detail = html(client.get(f"/admin/invitations/invitation/{invitation.id}/change/"))
    assert invitation.token_digest not in html(listing) and invitation.token_digest not in detail
    probe = client.get(
        "/admin/invitations/invitation/", {"token_digest__startswith": invitation.token_digest[0]}
    )
    assert probe.status_code == 400


def test_the_link_names_an_unconfirmed_inviter_as_the_email_does(owner, organization, mailbox):
    """A privacy audit: the mail said the inviter's address was not confirmed while the
    page it links to said "<address> invited you"."""
    User.objects.filter(pk=owner.pk).update(email_confirmed_at=None)
    path = invite(owner, organization, mailbox)
    warning = f"{owner.email} (this address is not confirmed) invited you"
    newcomer = UserFactory(email="newcomer@example.com")
    pages = (Client().get(path, follow=True), logged_in(newcomer).get(path, follow=True))
    for page in map(html, pages):  # join, accept
        assert warning in page
        assert f"{owner.email} invited you" not in page

    User.objects.filter(pk=owner.pk).update(email_confirmed_at=timezone.now())
    page = html(Client().get(path, follow=True))
    assert f"{owner.email} invited you" in page and "not confirmed" not in page
