"""Pages: `/` (organizations and projects, project creation) and organization members."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from apps.accounts.services import deactivate_user
from apps.orgs.models import Membership
from apps.projects.models import Project
from core.permissions import Role
from tests.factories import MembershipFactory, OrganizationFactory, ProjectFactory, UserFactory
from tests.pages import CONFIRMED, assert_no_inline_code, html, logged_in

pytestmark = pytest.mark.django_db

ROLES = ["owner", "admin", "member", "viewer"]


def members_url(organization) -> str:
    return f"/orgs/{organization.id}/members/"


# Home ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_home_lists_the_users_organizations_and_projects(request, role, project, other_project):
    user = request.getfixturevalue(role)
    second = OrganizationFactory(name="Second Org")
    MembershipFactory(organization=second, user=user, role=Role.VIEWER)
    ProjectFactory(organization=second, name="Side project")
    page = html(logged_in(user).get("/"))
    for name in ("Acme", "Second Org", "Checkout", "Billing", "Side project"):
        assert name in page
    assert f'href="/projects/{project.id}/"' in page
    assert "Theirs" not in page  # the outsider fixture's project is not listed
    assert_no_inline_code(page)


def test_organization_names_in_the_home_pages_sentences_are_isolated(owner, organization):
    """An organization's name inside a sentence is drawn in a <bdi>: a right-to-left
    name, or one stored before the name rules with an unclosed override, cannot reorder
    the words after it."""
    page = html(logged_in(owner).get("/"))
    only = html(logged_in(owner).get(f"/?org={organization.id}"))

    assert "Create the first project of <bdi>Acme</bdi> below." in page
    assert "Projects of <bdi>Acme</bdi>" in only


def test_every_name_input_takes_the_direction_of_what_is_typed(owner, organization):
    """A name typed in Arabic or Hebrew showed in the page's left-to-right order while it
    was typed, unlike everywhere it is shown afterwards (in a <bdi>)."""
    client = logged_in(owner)
    home = html(client.get("/"))
    project = ProjectFactory(organization=organization)
    keys = html(client.get(f"/projects/{project.id}/api-keys/"))
    signup = html(Client().get("/signup/"))

    assert re.search(
        r'<input type="text" name="name" id="project-name-[^"]+"[^>]* dir="auto"', home
    )
    assert re.search(r'<input type="text" name="name"[^>]* dir="auto"', keys)
    assert re.search(r'<input type="text" name="organization_name"[^>]* dir="auto"', signup)


def test_home_never_lists_other_organizations(outsider, project):
    page = html(logged_in(outsider).get("/"))
    assert "Elsewhere" in page
    assert "Acme" not in page and str(project.id) not in page


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_managers_get_a_create_project_form(request, role, organization):
    page = html(logged_in(request.getfixturevalue(role)).get("/"))
    assert f'action="/orgs/{organization.id}/projects/"' in page
    assert ">Create project</button>" in page


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_members_and_viewers_get_no_create_project_form(request, role, organization, project):
    response = logged_in(request.getfixturevalue(role)).get("/")
    assert response.status_code == 200
    page = html(response)
    assert f'href="/projects/{project.id}/"' in page  # the home page, not an error page
    assert "Create project" not in page


def test_owner_creates_a_project_and_lands_on_it(owner, organization):
    response = logged_in(owner).post(f"/orgs/{organization.id}/projects/", {"name": "Payments"})
    project = Project.objects.get(name="Payments")
    assert project.organization == organization
    assert response.status_code == 302 and response["Location"] == f"/projects/{project.id}/"


@pytest.mark.parametrize("name", ["  ", "Pay\u202ements"])
def test_project_name_errors_show_next_to_the_field(owner, organization, name):
    response = logged_in(owner).post(f"/orgs/{organization.id}/projects/", {"name": name})
    assert response.status_code == 200
    assert f'id="project-name-{organization.id}-error"' in html(response)
    assert not Project.objects.filter(organization=organization).exists()


@pytest.mark.parametrize(
    "name", ["\u2800", "Payments\U000e0041\U000e0042", "Payments\ufe0f", "Pay\u034fments"]
)
def test_a_project_name_that_shows_nothing_or_hides_characters_is_refused(
    owner, organization, name
):
    response = logged_in(owner).post(f"/orgs/{organization.id}/projects/", {"name": name})

    assert response.status_code == 200
    assert f'id="project-name-{organization.id}-error"' in html(response)
    assert not Project.objects.filter(organization=organization).exists()


def test_a_decomposed_project_name_is_counted_and_stored_composed(owner, organization):
    """60 accented letters typed decomposed (e + U+0301) are 120 code points: the form
    refused them as over 100 characters, and stored NFD the name matched no NFC search."""
    client = logged_in(owner)

    response = client.post(f"/orgs/{organization.id}/projects/", {"name": "e\u0301" * 60})

    assert response.status_code == 302
    assert Project.objects.get(organization=organization).name == "\xe9" * 60


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_members_and_viewers_cannot_create_projects(request, role, organization):
    client = logged_in(request.getfixturevalue(role))
    response = client.post(f"/orgs/{organization.id}/projects/", {"name": "Sneaky"})
    assert response.status_code == 403
    assert not Project.objects.filter(name="Sneaky").exists()


def test_outsider_cannot_create_projects_in_another_organization(outsider, organization):
    response = logged_in(outsider).post(f"/orgs/{organization.id}/projects/", {"name": "Sneaky"})
    assert response.status_code == 404
    assert not Project.objects.filter(name="Sneaky").exists()


def test_home_is_get_only(owner):
    assert logged_in(owner).post("/").status_code == 405


# Sidebar --------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_sidebar_shows_switchers_and_audit_log_only_to_managers(request, role, project):
    page = html(logged_in(request.getfixturevalue(role)).get(f"/projects/{project.id}/"))
    org = project.organization
    for link in (
        f'href="/projects/{project.id}/sdk-keys/"',
        f'href="/projects/{project.id}/api-keys/"',
        f'href="/orgs/{org.id}/api-keys/"',
        f'href="/orgs/{org.id}/members/"',
    ):
        assert link in page
    assert (f'href="/orgs/{org.id}/audit-log/"' in page) == (role in ("owner", "admin"))
    assert 'aria-label="Switch organization"' in page
    assert 'aria-label="Switch project"' in page
    assert 'action="/logout/"' in page


# Members --------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_members_page_lists_members_and_roles_for_every_role(
    request, role, organization, owner, admin, member, viewer
):
    response = logged_in(request.getfixturevalue(role)).get(members_url(organization))
    assert response.status_code == 200
    page = html(response)
    for user in (owner, admin, member, viewer):
        assert user.email in page
    assert (">Invite</button>" in page) == (role in ("owner", "admin"))
    assert_no_inline_code(page)


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_members_and_viewers_see_no_member_controls(request, role, organization, owner):
    response = logged_in(request.getfixturevalue(role)).get(members_url(organization))
    assert response.status_code == 200
    page = html(response)
    assert owner.email in page  # the members page, not an error page
    assert "Change role" not in page and ">Remove<" not in page and "<select" not in page


def test_outsider_gets_404_on_the_members_page_and_actions(outsider, organization, member):
    client = logged_in(outsider)
    assert client.get(members_url(organization)).status_code == 404
    invite = client.post(
        f"/orgs/{organization.id}/invitations/", {"email": "x@example.com", "role": "owner"}
    )
    assert invite.status_code == 404
    role_url = f"{members_url(organization)}{member.id}/role/"
    assert client.post(role_url, {"role": "viewer"}).status_code == 404
    assert (
        client.post(f"{members_url(organization)}{member.id}/remove/", CONFIRMED).status_code == 404
    )
    assert not Membership.objects.filter(organization=organization, user=outsider).exists()
    assert Membership.objects.get(organization=organization, user=member).role == Role.MEMBER


def test_the_members_page_no_longer_adds_by_email(owner, organization):
    """Adding by email told whether an account existed; invitations replaced it (issue 18)."""
    newcomer = UserFactory(email="newcomer@example.com")
    response = logged_in(owner).post(
        members_url(organization), {"email": newcomer.email, "role": "admin"}
    )
    assert response.status_code == 405
    assert not Membership.objects.filter(organization=organization, user=newcomer).exists()


def test_owner_changes_a_role(owner, member, organization):
    response = logged_in(owner).post(
        f"{members_url(organization)}{member.id}/role/", {"role": "viewer"}
    )
    assert response.status_code == 302
    assert Membership.objects.get(organization=organization, user=member).role == Role.VIEWER


def test_last_owner_cannot_be_demoted_and_the_error_shows_on_the_row(owner, organization):
    response = logged_in(owner).post(
        f"{members_url(organization)}{owner.id}/role/", {"role": "admin"}
    )
    assert response.status_code == 200
    assert (
        f'id="member-error-{owner.id}" role="alert">An organization must keep at least one owner.'
        in html(response)
    )
    assert Membership.objects.get(organization=organization, user=owner).role == Role.OWNER


def test_the_only_owners_row_offers_no_leave_or_role_change_and_says_why(
    owner, member, organization
):
    """Found by a UX review: a new sign-up's Leave and Change role always failed (409
    LAST_OWNER), the Leave error under the role select. A second owner brings both back."""
    client = logged_in(owner)

    def row(user) -> str:
        page = html(client.get(members_url(organization)))
        return page.split(f'data-member="{user.email}"')[1].split("</tr>")[0]

    alone = row(owner)
    assert "Leave" not in alone and "Change role" not in alone
    assert "The only owner: make someone else an owner before you leave" in alone
    assert "Change role" in row(member) and "Remove" in row(member)

    Membership.objects.filter(user=member).update(role=Role.OWNER)

    assert "Leave" in row(owner) and "Change role" in row(owner)
    assert "The only owner" not in row(owner)


def test_last_owner_cannot_leave(owner, organization):
    response = logged_in(owner).post(f"{members_url(organization)}{owner.id}/remove/", CONFIRMED)
    assert "An organization must keep at least one owner." in html(response)
    assert Membership.objects.filter(organization=organization, user=owner).exists()


def test_a_deactivated_owner_is_marked_and_the_last_active_owner_cannot_step_down(
    owner, organization
):
    former = MembershipFactory(organization=organization, role=Role.OWNER).user
    deactivate_user(user=former)
    client = logged_in(owner)

    page = html(client.get(members_url(organization)))

    def row(user) -> str:
        return page.split(f'data-member="{user.email}"')[1].split("</tr>")[0]

    assert ">Deactivated</span>" in row(former)
    assert ">Deactivated</span>" not in row(owner)

    response = client.post(f"{members_url(organization)}{owner.id}/role/", {"role": "admin"})
    assert "the other owners&#x27; accounts are deactivated" in html(response)
    assert Membership.objects.get(organization=organization, user=owner).role == Role.OWNER


def test_admin_cannot_change_or_remove_an_owner(admin, owner, organization):
    client = logged_in(admin)
    page = html(client.get(members_url(organization)))
    assert f"/members/{owner.id}/role/" not in page and f"/members/{owner.id}/remove/" not in page
    response = client.post(f"{members_url(organization)}{owner.id}/role/", {"role": "viewer"})
    assert "Only owners can change or remove owners." in html(response)
    response = client.post(f"{members_url(organization)}{owner.id}/remove/", CONFIRMED)
    assert "Only owners can change or remove owners." in html(response)
    assert Membership.objects.get(organization=organization, user=owner).role == Role.OWNER


def test_owner_removes_a_member_after_confirming(owner, member, organization):
    client = logged_in(owner)
    page = html(client.get(members_url(organization)))
    assert (
        f'/members/{member.id}/remove/" class="inline-form" data-confirm="Remove {member.email}'
        in page
    )
    response = client.post(f"{members_url(organization)}{member.id}/remove/", CONFIRMED)
    assert response.status_code == 302
    assert not Membership.objects.filter(organization=organization, user=member).exists()


def test_member_leaving_goes_home(owner, admin, organization):
    response = logged_in(admin).post(f"{members_url(organization)}{admin.id}/remove/", CONFIRMED)
    assert response.status_code == 302 and response["Location"] == "/"
    assert not Membership.objects.filter(organization=organization, user=admin).exists()


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_members_and_viewers_cannot_manage_members(request, role, organization, owner, member):
    client = logged_in(request.getfixturevalue(role))
    newcomer = UserFactory()
    invite_url = f"/orgs/{organization.id}/invitations/"
    assert client.post(invite_url, {"email": newcomer.email, "role": "viewer"}).status_code == 403
    assert (
        client.post(f"{members_url(organization)}{owner.id}/role/", {"role": "viewer"}).status_code
        == 403
    )
    assert (
        client.post(f"{members_url(organization)}{owner.id}/remove/", CONFIRMED).status_code == 403
    )
    assert not Membership.objects.filter(user=newcomer).exists()
    assert Membership.objects.get(organization=organization, user=owner).role == Role.OWNER


def test_member_of_another_organization_is_404_as_a_target(owner, organization, outsider):
    client = logged_in(owner)
    response = client.post(f"{members_url(organization)}{outsider.id}/remove/", CONFIRMED)
    assert response.status_code == 404
    assert Membership.objects.filter(user=outsider).exists()


def test_member_forms_need_the_csrf_token(owner, member, organization):
    client = logged_in(owner, Client(enforce_csrf_checks=True))
    assert (
        client.post(f"{members_url(organization)}{member.id}/remove/", CONFIRMED).status_code == 403
    )
    assert Membership.objects.filter(organization=organization, user=member).exists()


def test_the_members_page_shows_50_at_a_time_owners_first_then_by_address(owner, organization):
    """A pages audit: 3,000 members were one 6.6 MB page."""
    for n in range(60):
        MembershipFactory(
            organization=organization,
            role=Role.VIEWER if n % 2 else Role.MEMBER,
            user=UserFactory(email=f"person{n:02}@example.com"),
        )
    client = logged_in(owner)

    first = html(client.get(members_url(organization)))
    assert "61 members" in first and "Page 1 of 2" in first
    assert first.count("<tr data-member=") == 50
    rows = [line.split('"')[1] for line in first.split("<tr data-member=")[1:]]
    assert rows[0] == owner.email  # the owner first, then members by address, then viewers
    assert rows[1:] == [f"person{n:02}@example.com" for n in range(0, 60, 2)] + [
        f"person{n:02}@example.com" for n in range(1, 39, 2)
    ]
    assert 'href="?page=2#members-heading" rel="next">Next →</a>' in first
    second = html(client.get(members_url(organization), {"page": "2"}))
    assert second.count("<tr data-member=") == 11


def on_the_second_page(organization) -> Membership:
    """55 members more: the last of them is on the members page's second page."""
    for n in range(55):
        MembershipFactory(
            organization=organization, user=UserFactory(email=f"person{n:02}@example.com")
        )
    return Membership.objects.get(user__email="person54@example.com")


def test_a_change_on_a_later_page_comes_back_to_it(owner, organization):
    target = on_the_second_page(organization)
    client = logged_in(owner)
    page = html(client.get(members_url(organization), {"page": "2"}))
    assert 'name="page" value="2"' in page

    changed = client.post(
        f"{members_url(organization)}{target.user_id}/role/", {"role": "viewer", "page": "2"}
    )
    assert changed.status_code == 302 and changed["Location"].endswith("/members/?page=2")
    refused = client.post(
        f"{members_url(organization)}{target.user_id}/role/", {"role": "nonsense", "page": "2"}
    )
    assert f'id="member-error-{target.user_id}"' in html(refused)  # its row, on its page


def test_a_removal_confirmed_without_javascript_comes_back_to_its_page(owner, organization):
    target = on_the_second_page(organization)
    client = logged_in(owner)
    url = f"{members_url(organization)}{target.user_id}/remove/"

    asked = html(client.post(url, {"page": "2"}))  # no marker: the confirmation page
    assert '<input type="hidden" name="page" value="2">' in asked
    removed = client.post(url, {"page": "2", **CONFIRMED})
    assert removed.status_code == 302 and removed["Location"].endswith("/members/?page=2")
    assert not Membership.objects.filter(pk=target.pk).exists()
