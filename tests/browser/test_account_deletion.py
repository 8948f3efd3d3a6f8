"""Deleting one's account in Chromium: the danger zone says what goes, the password
confirms it, the browser is logged out, the keys of the organization it alone belonged
to stop, and an email confirms it."""

from __future__ import annotations

import pytest

from apps.accounts.models import User
from apps.apikeys.keyformat import KeyKind
from apps.orgs.models import Organization
from core.permissions import Role
from tests.browser.conftest import call_api
from tests.factories import (
    PASSWORD,
    MembershipFactory,
    OrganizationFactory,
    ProjectFactory,
    make_key,
)

pytestmark = pytest.mark.browser


def test_a_member_deletes_their_account_from_the_account_page(
    ui, mailbox, organization, owner, admin
):
    solo = OrganizationFactory(name="Side project")
    MembershipFactory(organization=solo, user=admin, role=Role.OWNER)
    _key, plaintext = make_key(
        KeyKind.SECRET, project=ProjectFactory(organization=solo, name="Scratch"), actor=admin
    )
    _kept, kept_plaintext = make_key(KeyKind.ORGANIZATION, organization=organization, actor=admin)
    assert call_api(ui.base, "/v1/me", plaintext)[0] == 200
    page = ui.page
    ui.login(admin.email, PASSWORD)

    ui.goto("/account/#delete-account")
    section = page.locator("#delete-account")
    section.get_by_text("Side project: 1 project, 1 key (they stop working at once)").wait_for()
    section.get_by_text("You leave Acme.").wait_for()
    section.get_by_label("Current password").fill("not-my-password")
    section.get_by_label("I understand").check()
    section.get_by_role("button", name="Delete account").click()
    page.locator("#delete-account").get_by_text("The password is incorrect.").wait_for()
    assert User.objects.filter(pk=admin.pk).exists()

    section = page.locator("#delete-account")
    section.get_by_label("Current password").fill(PASSWORD)
    section.get_by_label("I understand").check()
    section.scroll_into_view_if_needed()
    ui.shot("account-delete-confirm")
    section.get_by_role("button", name="Delete account").click()

    page.wait_for_url(ui.url("/login/"))
    page.get_by_text("Your account was deleted").wait_for()
    ui.shot("account-deleted")
    assert not User.objects.filter(pk=admin.pk).exists()
    assert not Organization.objects.filter(pk=solo.pk).exists()
    assert call_api(ui.base, "/v1/me", plaintext)[0] == 401
    assert call_api(ui.base, "/v1/me", kept_plaintext)[0] == 200
    [mail] = mailbox.wait_for(admin.email)
    assert mail.subject == "Your SigSentry account was deleted"
    ui.goto("/account/")  # the browser is logged out
    assert page.url.startswith(ui.url("/login/"))


def test_a_last_owner_is_shown_where_to_promote_someone(ui, organization, owner, member):
    ui.login(owner.email, PASSWORD)

    ui.goto("/account/#delete-account")
    section = ui.page.locator("#delete-account")
    section.get_by_text(
        "You are the last owner of an organization that has other members"
    ).wait_for()
    assert section.get_by_role("button", name="Delete account").count() == 0
    section.scroll_into_view_if_needed()
    ui.shot("account-delete-last-owner")
    section.get_by_role("link", name="Members of Acme").click()
    ui.page.wait_for_url(ui.url(f"/orgs/{organization.id}/members/"))
