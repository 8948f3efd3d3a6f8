"""Dashboard pages read a bounded number of projects: the switcher the current
organization's first 50 by name, the home page each organization's first 12 with their
number, and `/?org=` one organization's, a page at a time (a large-tenant audit: 1,346
projects cost every page 23 ms, and home was 669 KB)."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.projects.models import Project
from core.permissions import Role
from tests.factories import MembershipFactory, OrganizationFactory
from tests.pages import html, logged_in

pytestmark = pytest.mark.django_db

SWITCHER = 50
HOME_PER_ORG = 12
PER_PAGE = 50


def projects(organization, count: int, prefix: str = "P") -> list[Project]:
    return Project.objects.bulk_create(
        Project(organization=organization, name=f"{prefix}{n:04}") for n in range(count)
    )


def switcher(page: str) -> list[str]:
    menu = re.search(
        r'<ul class="switcher-menu" aria-label="Switch project">(.*?)</ul>', page, re.S
    )
    return re.findall(r'href="/projects/([0-9a-f-]+)/"', menu[1])


def tiles(page: str, organization) -> list[str]:
    card = re.search(
        rf'<section class="card org-card" aria-labelledby="org-{organization.id}">(.*?)</section>',
        page,
        re.S,
    )
    return re.findall(r'class="project-name">([^<]+)<', card[1])


def test_the_switcher_lists_the_first_50_projects_and_links_to_the_rest(owner, organization):
    made = projects(organization, SWITCHER + 10)
    page = html(logged_in(owner).get(f"/orgs/{organization.id}/members/"))
    assert switcher(page) == [str(p.id) for p in made[:SWITCHER]]
    assert f'href="/?org={organization.id}">All projects of' in page


def test_a_small_organization_lists_every_project_and_no_link(owner, organization):
    made = projects(organization, 3)
    page = html(logged_in(owner).get(f"/orgs/{organization.id}/members/"))
    assert switcher(page) == [str(p.id) for p in made]
    assert "All projects of" not in page


def test_another_organizations_link_lands_on_its_first_project(owner, organization):
    other = OrganizationFactory(name="Zeta")
    MembershipFactory(organization=other, user=owner, role=Role.VIEWER)
    first = projects(other, 5, prefix="Q")[0]
    page = html(logged_in(owner).get(f"/orgs/{organization.id}/members/"))
    assert f'<a href="/projects/{first.id}/" ><span class="switcher-name">Zeta</span>' in page
    assert "Q0001" not in page  # not the current organization: none of its projects is read


def test_a_page_costs_the_same_queries_whatever_the_projects(owner, organization):
    client = logged_in(owner)
    url = f"/orgs/{organization.id}/members/"
    projects(organization, 2)
    client.get(url)
    with CaptureQueriesContext(connection) as few:
        client.get(url)
    projects(organization, 300, prefix="R")
    others = [OrganizationFactory() for _ in range(3)]
    for other in others:
        MembershipFactory(organization=other, user=owner)
        projects(other, 40, prefix=f"{other.name}-")
    with CaptureQueriesContext(connection) as many:
        page = html(client.get(url))
    assert len(switcher(page)) == SWITCHER
    assert len(many.captured_queries) == len(few.captured_queries)
    loaded = [q["sql"] for q in many.captured_queries if 'FROM "projects_project"' in q["sql"]]
    assert all("LIMIT" in sql for sql in loaded), loaded


def test_home_shows_12_projects_of_each_organization_with_their_number(owner, organization):
    made = projects(organization, 30)
    other = OrganizationFactory(name="Zeta")
    MembershipFactory(organization=other, user=owner)
    projects(other, 2, prefix="Q")

    page = html(logged_in(owner).get("/"))

    assert tiles(page, organization) == [p.name for p in made[:HOME_PER_ORG]]
    assert "30 projects" in page
    assert f'href="/?org={organization.id}">All 30 projects of' in page
    assert tiles(page, other) == ["Q0000", "Q0001"] and "2 projects" in page


def test_home_queries_do_not_grow_with_organizations(owner, organization):
    client = logged_in(owner)
    projects(organization, 20)
    client.get("/")
    with CaptureQueriesContext(connection) as few:
        client.get("/")
    for _ in range(5):
        other = OrganizationFactory()
        MembershipFactory(organization=other, user=owner)
        projects(other, 20, prefix=f"{other.name}-")
    with CaptureQueriesContext(connection) as many:
        page = html(client.get("/"))
    assert page.count('class="project-name"') == 6 * HOME_PER_ORG
    assert len(many.captured_queries) == len(few.captured_queries)


def test_one_organizations_projects_come_a_page_at_a_time(owner, organization):
    made = projects(organization, PER_PAGE + 5)
    other = OrganizationFactory()
    MembershipFactory(organization=other, user=owner)
    client = logged_in(owner)

    page = html(client.get("/", {"org": str(organization.id)}))
    assert tiles(page, organization) == [p.name for p in made[:PER_PAGE]]
    assert f'aria-labelledby="org-{other.id}"' not in page
    assert f"?org={organization.id}&amp;page=2#org-{organization.id}" in page

    rest = html(client.get("/", {"org": str(organization.id), "page": 2}))
    assert tiles(rest, organization) == [p.name for p in made[PER_PAGE:]]


@pytest.mark.parametrize("org", ["outsider", "garbage"])
def test_another_organizations_list_is_404(owner, org):
    theirs = OrganizationFactory()
    value = str(theirs.id) if org == "outsider" else "not-a-uuid"
    assert logged_in(owner).get("/", {"org": value}).status_code == 404
