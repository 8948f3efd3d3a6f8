"""The invitation link's token leaves the address bar (core.token_cookie): the emailed
`/invitations/<token>/` keeps it in a sealed cookie of the invitation pages and redirects
to `/invitations/open/`, and the way back from logging in no longer names it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from apps.accounts.cookies import ACCESS_COOKIE
from apps.accounts.password_reset import make_reset_token
from apps.accounts.reset_link import RESET_COOKIE
from apps.invitations.models import Invitation
from apps.invitations.views import INVITATION_COOKIE, OPEN_PATH
from apps.orgs.models import Membership
from tests.factories import PASSWORD, UserFactory
from tests.invitations.test_views import invite
from tests.pages import html, logged_in

pytestmark = pytest.mark.django_db

SEVEN_DAYS = 7 * 24 * 3600


def token_of(path: str) -> str:
    return path.removeprefix("/invitations/").removesuffix("/")


def test_a_good_link_keeps_its_token_in_a_cookie_and_leaves_the_address_bar(
    owner, organization, mailbox
):
    path = invite(owner, organization, mailbox)
    token = token_of(path)
    client = Client()

    opened = client.get(path)

    assert opened.status_code == 302 and opened["Location"] == OPEN_PATH
    cookie = opened.cookies[INVITATION_COOKIE]
    assert cookie["httponly"] is True and cookie["samesite"] == "Lax"
    assert cookie["path"] == "/invitations/" and not cookie["secure"]
    assert SEVEN_DAYS - 60 < cookie["max-age"] <= SEVEN_DAYS
    assert token not in cookie.value
    page = client.get(OPEN_PATH)
    body = html(page)
    assert page.status_code == 200 and 'Join <span class="invite-org">Acme</span>' in body
    assert token not in body and cookie.value not in body
    # the way back from logging in names the fixed URL, not the link
    assert 'href="/login/?next=%2Finvitations%2Fopen%2F"' in body


def test_the_cookie_lives_no_longer_than_the_invitation(owner, organization, mailbox):
    path = invite(owner, organization, mailbox)
    Invitation.objects.update(expires_at=timezone.now() + timedelta(hours=1))
    opened = Client().get(path, secure=True)
    assert 3500 < opened.cookies[INVITATION_COOKIE]["max-age"] <= 3600
    assert opened.cookies[INVITATION_COOKIE]["secure"] is True


def test_logged_out_an_invitee_logs_in_comes_back_and_accepts(owner, organization, mailbox):
    newcomer = UserFactory(email="newcomer@example.com")
    path = invite(owner, organization, mailbox)
    client = Client()
    client.get(path)
    login_page = html(client.get(OPEN_PATH))
    assert "/login/?next=%2Finvitations%2Fopen%2F" in login_page

    back = client.post(
        "/login/?next=/invitations/open/", {"email": newcomer.email, "password": PASSWORD}
    )
    assert back.status_code == 302 and back["Location"] == OPEN_PATH
    assert "Accept invitation" in html(client.get(OPEN_PATH))
    accepted = client.post(OPEN_PATH)

    assert accepted.status_code == 302 and accepted["Location"] == "/"
    assert Membership.objects.filter(organization=organization, user=newcomer).exists()
    assert accepted.cookies[INVITATION_COOKIE].value == ""  # the cookie goes once joined
    assert accepted.cookies[INVITATION_COOKIE]["path"] == "/invitations/"


def test_signing_up_from_the_open_page_joins_and_drops_the_cookie(owner, organization, mailbox):
    path = invite(owner, organization, mailbox)
    client = Client()
    client.get(path)
    joined = client.post(OPEN_PATH, {"password": "newcomer-passphrase-2026"})
    assert joined.status_code == 302 and joined["Location"] == "/"
    assert joined.cookies[ACCESS_COOKIE].value
    assert joined.cookies[INVITATION_COOKIE].value == ""
    newcomer = Membership.objects.get(organization=organization, user__email="newcomer@example.com")
    assert newcomer is not None
    # the link again: a member now, and told so (not "invalid")
    assert client.get(path)["Location"] == "/"


def test_the_open_page_without_a_good_cookie_is_the_invalid_page(owner, organization, mailbox):
    path = invite(owner, organization, mailbox)
    assert Client().get(OPEN_PATH).status_code == 404
    kept = Client().get(path).cookies[INVITATION_COOKIE].value
    for forged in (
        kept[:-4] + ("AAAA" if kept[-4:] != "AAAA" else "BBBB"),  # altered
        token_of(path),  # the bare token
        Client().get(f"/reset/{make_reset_token(owner)}/").cookies[RESET_COOKIE].value,
    ):
        client = Client()
        client.cookies[INVITATION_COOKIE] = forged
        refused = client.post(OPEN_PATH, {"password": "newcomer-passphrase-2026"})
        assert refused.status_code == 404 and "This invitation no longer works" in html(refused)
        assert refused.cookies[INVITATION_COOKIE].value == ""
    assert not Membership.objects.filter(user__email="newcomer@example.com").exists()


def test_a_dead_link_keeps_nothing_and_a_cancelled_one_drops_its_cookie(
    owner, organization, mailbox
):
    assert INVITATION_COOKIE not in Client().get("/invitations/not-a-real-token/").cookies
    path = invite(owner, organization, mailbox)
    client = Client()
    client.get(path)
    Invitation.objects.update(cancelled_at=timezone.now())
    refused = client.get(OPEN_PATH)
    assert refused.status_code == 404 and refused.cookies[INVITATION_COOKIE].value == ""
    assert INVITATION_COOKIE not in Client().get(path).cookies


def test_someone_else_with_the_cookie_learns_nothing_and_cannot_accept(
    owner, organization, mailbox, outsider
):
    path = invite(owner, organization, mailbox)
    client = logged_in(outsider)
    client.get(path)
    page = html(client.get(OPEN_PATH))
    assert "This invitation is for someone else" in page
    assert "Acme" not in page and "newcomer@example.com" not in page
    client.post(OPEN_PATH)
    assert not Membership.objects.filter(organization=organization, user=outsider).exists()
    assert Invitation.objects.get().accepted_at is None


def test_the_open_page_forms_need_the_csrf_token(owner, organization, mailbox):
    path = invite(owner, organization, mailbox)
    client = Client(enforce_csrf_checks=True)
    client.get(path)
    assert 'name="csrfmiddlewaretoken"' in html(client.get(OPEN_PATH))
    assert client.post(OPEN_PATH, {"password": "newcomer-passphrase-2026"}).status_code == 403
    assert not Membership.objects.filter(user__email="newcomer@example.com").exists()
