"""Dashboard pages read a bounded number of organizations: the switcher the first 20 by
name and the current one, the home page 20 at a time (a large-tenant audit: a user in 200
organizations carried all 200 in every page's switcher, and home was 564 KB)."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.orgs.models import Membership, Organization
from apps.projects.models import Project
from core.permissions import Role
from tests.factories import UserFactory
from tests.pages import html, logged_in

pytestmark = pytest.mark.django_db

PER_PAGE = 20


@pytest.fixture
def user():
    """Someone in no organization yet: each test makes theirs."""
    return UserFactory()


def join(user, count: int, *, role=Role.OWNER, prefix: str = "Org") -> list[Organization]:
    """`count` organizations of `user`, named `<prefix>000`…, each with one project."""
    made = Organization.objects.bulk_create(
        Organization(name=f"{prefix}{n:03}") for n in range(count)
    )
    Membership.objects.bulk_create(Membership(organization=o, user=user, role=role) for o in made)
    Project.objects.bulk_create(Project(organization=o, name=f"{o.name} app") for o in made)
    return made


def switcher(page: str) -> list[str]:
    menu = re.search(
        r'<ul class="switcher-menu" aria-label="Switch organization">(.*?)</ul>', page, re.S
    )
    return re.findall(r'<span class="switcher-name">([^<]+)</span>', menu[1])


def sections(page: str) -> list[str]:
    return re.findall(r'<section class="card org-card" aria-labelledby="org-([0-9a-f-]+)">', page)


def test_the_switcher_lists_the_first_20_organizations_and_the_current_one(user):
    made = join(user, PER_PAGE + 10)
    last = made[-1]

    page = html(logged_in(user).get(f"/orgs/{last.id}/members/"))

    assert switcher(page) == [o.name for o in made[:PER_PAGE]] + [last.name]
    assert f'<span class="switcher-value">{last.name}</span>' in page
    assert '<li class="switcher-footer"><a href="/">All organizations</a></li>' in page


def test_home_lists_20_organizations_a_page_at_a_time(user):
    made = join(user, PER_PAGE + 5)
    client = logged_in(user)

    first = html(client.get("/"))
    assert sections(first) == [str(o.id) for o in made[:PER_PAGE]]
    assert 'href="?page=2"' in first and "Page 1 of 2 · 25 total" in first

    rest = html(client.get("/", {"page": 2}))
    assert sections(rest) == [str(o.id) for o in made[PER_PAGE:]]
    assert "Page 2 of 2" in rest


def test_a_few_organizations_fit_one_page_as_before(user):
    organization = join(user, 4)[0]
    page = html(logged_in(user).get(f"/orgs/{organization.id}/members/"))
    home = html(logged_in(user).get("/"))

    assert len(sections(home)) == 4
    assert 'class="pagination"' not in home
    assert f'<a href="/#new-project-{organization.id}">+ New project</a>' in page


def test_new_project_leads_to_the_organizations_own_list_when_home_is_paged(user):
    last = join(user, PER_PAGE + 1)[-1]
    page = html(logged_in(user).get(f"/orgs/{last.id}/members/"))
    assert f'<a href="/?org={last.id}#new-project-{last.id}">+ New project</a>' in page


def test_a_refused_project_name_shows_on_the_page_of_its_organization(user):
    made = join(user, PER_PAGE + 5)
    late = made[PER_PAGE + 2]

    response = logged_in(user).post(f"/orgs/{late.id}/projects/", {"name": " "})

    page = html(response)
    assert sections(page) == [str(o.id) for o in made[PER_PAGE:]]
    assert f'id="project-name-{late.id}-error"' in page


@pytest.mark.parametrize("url", ["/", "members", "/account/"])
def test_pages_cost_the_same_queries_and_size_whatever_the_organizations(user, url):
    """4 organizations or 85: the same queries; 25 or 85: the same page, but for its count."""
    organization = join(user, 4, prefix="B")[0]
    url = f"/orgs/{organization.id}/members/" if url == "members" else url
    client = logged_in(user)
    client.get(url)
    with CaptureQueriesContext(connection) as few:
        client.get(url)
    join(user, 21, prefix="C")
    paged = client.get(url)
    join(user, 60, prefix="Z")  # after the others by name: the first page stays the same
    with CaptureQueriesContext(connection) as many:
        large = client.get(url)

    assert large.status_code == 200
    assert len(many.captured_queries) == len(few.captured_queries)
    assert len(switcher(html(large))) == PER_PAGE
    assert abs(len(large.content) - len(paged.content)) < 200
