"""The account page's "Delete account" section and its form (`/account/delete/`)."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.accounts import account_views
from apps.accounts.cookies import ACCESS_COOKIE
from apps.accounts.models import User
from apps.apikeys.keyformat import KeyKind
from apps.orgs.models import Membership, Organization
from core.permissions import Role
from tests.accounts.test_two_factor import enable_two_factor
from tests.factories import (
    PASSWORD,
    MembershipFactory,
    OrganizationFactory,
    ProjectFactory,
    make_key,
)
from tests.pages import html, logged_in

pytestmark = pytest.mark.django_db

DELETE = "/account/delete/"


def delete_form(password=PASSWORD, **extra) -> dict[str, str]:
    return {"delete-password": password, "delete-understand": "on", **extra}


def test_the_page_lists_what_goes_and_what_stays(organization, project, owner, admin):
    solo = OrganizationFactory(name="Solo \u202eevil")
    MembershipFactory(organization=solo, user=admin, role=Role.OWNER)
    make_key(KeyKind.SECRET, project=ProjectFactory(organization=solo), actor=admin)

    page = html(logged_in(admin).get("/account/"))

    assert "Delete account" in page
    assert "<bdi>Solo \u202eevil</bdi>: 1 project, 1 key (they stop working at once)" in page
    assert "You leave <bdi>Acme</bdi>." in page
    assert 'action="/account/delete/"' in page and 'name="delete-code"' not in page


def test_past_the_listed_organizations_the_rest_are_counted(
    monkeypatch, organization, owner, admin
):
    monkeypatch.setattr(account_views, "DELETION_ORGANIZATIONS_LISTED", 2)
    for n in range(3):
        MembershipFactory(organization=OrganizationFactory(name=f"Solo {n}"), user=admin)

    page = html(logged_in(admin).get("/account/"))

    assert page.count("<bdi>Solo ") == 2
    assert "And 1 more." in page


def test_a_last_owner_is_told_where_to_promote_someone_and_gets_no_form(
    organization, owner, member
):
    page = html(logged_in(owner).get("/account/"))

    assert "You are the last owner of an organization that has other members" in page
    assert f'<a href="/orgs/{organization.id}/members/">Members of <bdi>Acme</bdi></a>' in page
    assert 'action="/account/delete/"' not in page


def test_the_right_password_deletes_the_account_and_logs_the_browser_out(organization, member):
    client = logged_in(member)

    response = client.post(DELETE, delete_form())

    assert response.status_code == 302 and response["Location"] == "/login/"
    assert response.cookies[ACCESS_COOKIE].value == ""
    assert not User.objects.filter(pk=member.pk).exists()
    assert client.get("/account/").status_code == 302  # to the login page


def test_a_wrong_password_changes_nothing(organization, member):
    response = logged_in(member).post(DELETE, delete_form("wrong-password-here"))

    assert response.status_code == 200
    assert "The password is incorrect." in html(response)
    assert User.objects.filter(pk=member.pk).exists()
    assert Membership.objects.filter(user=member).exists()


def test_without_the_box_ticked_nothing_changes(organization, member):
    response = logged_in(member).post(DELETE, {"delete-password": PASSWORD})

    assert "Tick the box" in html(response)
    assert User.objects.filter(pk=member.pk).exists()


def test_with_two_factor_on_a_wrong_code_changes_nothing(organization, member):
    enable_two_factor(member)
    client = logged_in(member)
    assert 'name="delete-code"' in html(client.get("/account/"))

    response = client.post(DELETE, delete_form(**{"delete-code": "000000"}))

    assert response.status_code == 200
    assert User.objects.filter(pk=member.pk).exists()
    response = client.post(DELETE, delete_form())
    assert "This field is required." in html(response)
    assert User.objects.filter(pk=member.pk).exists()


def test_only_the_logged_in_account_can_be_deleted(organization, owner, outsider):
    victim = Membership.objects.get(organization=organization, user=owner)
    fields = delete_form(user=str(owner.pk), email=owner.email, user_id=str(owner.pk))

    logged_in(outsider).post(DELETE, fields)  # the outsider's own password: only they go

    assert not User.objects.filter(pk=outsider.pk).exists()
    assert User.objects.filter(pk=owner.pk).exists()
    assert Membership.objects.filter(pk=victim.pk).exists()
    assert Organization.objects.filter(pk=organization.pk).exists()


def test_a_visitor_without_a_session_deletes_nothing(organization, member):
    response = Client().post(DELETE, delete_form(email=member.email))

    assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert User.objects.filter(pk=member.pk).exists()


def test_a_post_without_the_csrf_token_is_refused(organization, member):
    client = logged_in(member, Client(enforce_csrf_checks=True))

    response = client.post(DELETE, delete_form())

    assert response.status_code == 403
    assert User.objects.filter(pk=member.pk).exists()


def test_wrong_passwords_are_throttled_as_logins_are(organization, member):
    client = logged_in(member)
    for _ in range(10):
        client.post(DELETE, delete_form("wrong-password-here"))

    response = client.post(DELETE, delete_form())

    assert "Too many attempts" in html(response)
    assert User.objects.filter(pk=member.pk).exists()


def test_an_operator_is_told_another_operator_deletes_their_account(organization, member):
    User.objects.filter(pk=member.pk).update(is_staff=True)

    page = html(logged_in(member).get("/account/"))

    assert "deleted by another operator, in the admin" in page
    assert 'action="/account/delete/"' not in page
