"""An organization holds at most MAX_PROJECTS_PER_ORGANIZATION projects (a bounds audit:
nothing throttled their creation and only operators delete one, so an owner's script added
them without end, each with its own log sources, channels and keys). One more is a
`400 VALIDATION_ERROR` on `name`, on the dashboard the form's error; creations at the same
moment wait for each other, so the bound is exact."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from apps.orgs import services as org_services
from apps.projects import services as project_services
from apps.projects.models import Project
from tests.factories import UserFactory
from tests.orgs.helpers import error_fields, membership_inline_data, user_client
from tests.pages import html, logged_in
from tests.races import race_for_the_last_place

MAX_PROJECTS = project_services.MAX_PROJECTS_PER_ORGANIZATION
BOUND_MESSAGE = f"At most {MAX_PROJECTS:,} projects per organization."


def fill_projects(organization, count: int) -> None:
    Project.objects.bulk_create(
        (Project(organization=organization, name=f"P{n:05}") for n in range(count)),
        batch_size=1000,
    )


@pytest.mark.django_db
def test_an_organization_at_its_projects_bound_refuses_the_next(owner, organization):
    fill_projects(organization, MAX_PROJECTS - 1)
    client = user_client(owner)
    path = f"/v1/organizations/{organization.id}/projects"

    last = client.post(path, {"name": "Last"}, format="json")
    refused = client.post(path, {"name": "One more"}, format="json")

    assert last.status_code == 201, last.json()
    assert refused.status_code == 400
    assert error_fields(refused)["name"] == [f"At most {MAX_PROJECTS:,} projects per organization."]
    assert Project.objects.filter(organization=organization).count() == MAX_PROJECTS


@pytest.mark.django_db
def test_the_dashboard_shows_the_projects_bound_next_to_the_name(owner, organization):
    fill_projects(organization, MAX_PROJECTS)

    response = logged_in(owner).post(f"/orgs/{organization.id}/projects/", {"name": "More"})

    assert response.status_code == 200
    page = html(response)
    assert f'id="project-name-{organization.id}-error"' in page
    assert f"At most {MAX_PROJECTS:,} projects per organization." in page
    assert not Project.objects.filter(name="More").exists()


@pytest.mark.django_db
def test_the_projects_bound_is_per_organization(owner, organization):
    fill_projects(organization, MAX_PROJECTS)
    other = org_services.create_organization(actor=owner, name="Other")
    response = user_client(owner).post(
        f"/v1/organizations/{other.id}/projects", {"name": "Fine"}, format="json"
    )
    assert response.status_code == 201, response.json()


@pytest.mark.django_db(transaction=True)
def test_two_projects_created_with_room_for_one_make_one(owner, organization):
    fill_projects(organization, MAX_PROJECTS - 1)
    client = user_client(owner)
    path = f"/v1/organizations/{organization.id}/projects"

    def create():
        return client.post(path, {"name": "Racing"}, format="json")

    first, second = race_for_the_last_place(
        create, create, held_after='INSERT INTO "projects_project"'
    )

    assert (first.status_code, second.status_code) == (201, 400)
    assert Project.objects.filter(organization=organization).count() == MAX_PROJECTS


def operator() -> Client:
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def no_inline_rows(*prefixes: str) -> dict:
    return {
        f"{prefix}-{field}": value
        for prefix in prefixes
        for field, value in (
            ("TOTAL_FORMS", "0"),
            ("INITIAL_FORMS", "0"),
            ("MAX_NUM_FORMS", "1000"),
        )
    }


@pytest.mark.django_db
def test_the_admin_refuses_a_project_past_the_bound_with_a_form_error(owner, organization):
    """Found by an admin audit: the admin's add page made the bound's 10,001st project."""
    fill_projects(organization, MAX_PROJECTS - 1)
    path = reverse("admin:projects_project_add")
    form = {"organization": str(organization.pk), **no_inline_rows("log_sources", "channels")}
    client = operator()

    last = client.post(path, {**form, "name": "Last"})
    refused = client.post(path, {**form, "name": "One more"})

    assert last.status_code == 302
    assert refused.status_code == 200
    assert refused.context["adminform"].form.errors["organization"] == [BOUND_MESSAGE]
    assert Project.objects.filter(organization=organization).count() == MAX_PROJECTS


@pytest.mark.django_db
def test_the_organizations_page_adds_no_projects_past_the_bound(owner, organization, monkeypatch):
    # the page edits projects in place up to 25 rows: a bound of 3 to reach it there
    monkeypatch.setattr(project_services, "MAX_PROJECTS_PER_ORGANIZATION", 3)
    fill_projects(organization, 1)
    path = reverse("admin:orgs_organization_change", args=[organization.pk])
    form = membership_inline_data(organization, {})

    def with_new_projects(*names: str) -> dict:
        rows = {f"projects-{n}-name": name for n, name in enumerate(names)}
        rows |= {f"projects-{n}-organization": str(organization.pk) for n in range(len(names))}
        return {**form, **rows, "projects-TOTAL_FORMS": str(len(names))}

    refused = operator().post(path, with_new_projects("Two", "Three", "Four"))
    taken = operator().post(path, with_new_projects("Two", "Three"))

    assert refused.status_code == 200
    assert "At most 3 projects per organization." in refused.content.decode()
    assert taken.status_code == 302
    assert sorted(organization.projects.values_list("name", flat=True)) == [
        "P00000",
        "Three",
        "Two",
    ]


@pytest.mark.django_db(transaction=True)
def test_the_admin_and_the_api_with_room_for_one_make_one(owner, organization):
    fill_projects(organization, MAX_PROJECTS - 1)
    client, admin = user_client(owner), operator()
    form = {"name": "By hand", "organization": str(organization.pk)}

    def add_in_the_admin():
        data = {**form, **no_inline_rows("log_sources", "channels")}
        return admin.post(reverse("admin:projects_project_add"), data)

    def create_in_the_api():
        path = f"/v1/organizations/{organization.id}/projects"
        return client.post(path, {"name": "Racing"}, format="json")

    first, second = race_for_the_last_place(
        add_in_the_admin, create_in_the_api, held_after='INSERT INTO "projects_project"'
    )

    assert (first.status_code, second.status_code) == (302, 400)
    assert Project.objects.filter(organization=organization).count() == MAX_PROJECTS
