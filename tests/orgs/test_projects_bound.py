"""An organization holds at most MAX_PROJECTS_PER_ORGANIZATION projects (a bounds audit:
nothing throttled their creation and only operators delete one, so an owner's script added
them without end, each with its own log sources, channels and keys). One more is a
`400 VALIDATION_ERROR` on `name`, on the dashboard the form's error; creations at the same
moment wait for each other, so the bound is exact."""

from __future__ import annotations

import pytest

from apps.orgs import services as org_services
from apps.projects import services as project_services
from apps.projects.models import Project
from tests.orgs.helpers import error_fields, user_client
from tests.pages import html, logged_in
from tests.races import race_for_the_last_place

MAX_PROJECTS = project_services.MAX_PROJECTS_PER_ORGANIZATION


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
