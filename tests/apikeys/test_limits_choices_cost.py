"""The org keys page builds no project choices per row: an unbound "Edit limits" dialog
copies the page's one list when it opens, so choices made for each row went unused
(50 rows in an organization of 1,200 projects: 325 ms of building)."""

from __future__ import annotations

import re

import pytest

from apps.apikeys.forms import KeyCreateForm, LimitsForm
from apps.apikeys.keyformat import KeyKind
from apps.projects.models import Project
from tests.apikeys.test_views import org_url
from tests.factories import make_key
from tests.pages import html, logged_in

pytestmark = pytest.mark.django_db


def test_row_forms_of_the_org_page_carry_no_project_choices(owner, project, other_project):
    for _ in range(3):
        make_key(KeyKind.ORGANIZATION, project=project)

    response = logged_in(owner).get(org_url(project.organization))

    rows = response.context["rows"]
    assert len(rows) == 3
    assert all(list(row.limits.fields["project_ids"].choices) == [] for row in rows)
    # The dialogs still get the projects: the page's one list, copied when one opens.
    assert len(response.context["project_choices"]) == 2
    assert html(response).count("data-project-choices=") == 3


def test_an_unbound_limits_form_ignores_the_projects_a_bound_one_validates_with(
    owner, project, other_project
):
    api_key, _ = make_key(KeyKind.ORGANIZATION, project=project)
    projects = [project, other_project]

    unbound = LimitsForm.for_key(api_key, KeyKind.ORGANIZATION, projects)
    assert list(unbound.fields["project_ids"].choices) == []

    bound = LimitsForm.for_key(
        api_key, KeyKind.ORGANIZATION, projects, data={"project_ids": [str(other_project.id)]}
    )
    assert bound.is_valid(), bound.errors
    assert bound.cleaned_data["project_ids"] == [str(other_project.id)]
    stranger = LimitsForm.for_key(
        api_key, KeyKind.ORGANIZATION, projects, data={"project_ids": ["not-a-project"]}
    )
    assert not stranger.is_valid() and "project_ids" in stranger.errors


def test_an_org_without_projects_draws_no_empty_project_list(owner, organization):
    make_key(KeyKind.ORGANIZATION, organization=organization)

    page = html(logged_in(owner).get(org_url(organization)))

    assert "data-project-choices=" not in page
    assert not re.search(r'<ul class="check-list project-list"', page)


def test_each_project_weighs_on_the_org_page_once(owner, organization):
    """A project is one checkbox line of the create form (about 190 bytes), which the
    dialogs copy: the page grows by one such line a project, not two (at 1,200 projects the
    second copy was 200 KB)."""
    make_key(KeyKind.ORGANIZATION, organization=organization)
    client = logged_in(owner)
    # Enough to fill the sidebar's project switcher (50), which the later ones do not enter.
    Project.objects.bulk_create(
        Project(organization=organization, name=f"A{n:03}") for n in range(60)
    )
    few = len(client.get(org_url(organization)).content)
    Project.objects.bulk_create(
        Project(organization=organization, name=f"Q{n:03}") for n in range(100)
    )

    page = html(client.get(org_url(organization)))

    assert page.count('name="project_ids"') == 160
    assert (len(page.encode()) - few) / 100 < 250


def test_the_project_boxes_are_drawn_without_a_widget_template_each(owner, organization):
    """Four widget templates a project took 250 ms of a page in an organization of 1,200
    projects: the boxes are written by the page's own template, in as many templates
    whatever the number of projects."""
    make_key(KeyKind.ORGANIZATION, organization=organization)
    client = logged_in(owner)
    Project.objects.bulk_create(Project(organization=organization, name=f"P{n}") for n in range(2))
    few = client.get(org_url(organization))
    Project.objects.bulk_create(Project(organization=organization, name=f"Q{n}") for n in range(60))

    many = client.get(org_url(organization))

    assert html(many).count('name="project_ids"') == 62
    assert len(many.templates) == len(few.templates)
    assert "django/forms/widgets/checkbox_option.html" not in [t.name for t in many.templates]


def boxes(page: str) -> list[str]:
    source = re.search(
        r'<ul class="check-list project-list" id="project-choices">(.*?)</ul>', page, re.S
    )
    return re.findall(r"<li>.*?</li>", source[1])


def widget_boxes(form) -> list[str]:
    """The boxes as Django's CheckboxSelectMultiple writes them."""
    return [
        f'<li>{box.tag()}<label for="{box.id_for_label}">{box.choice_label}</label></li>'
        for box in form["project_ids"]
    ]


def test_the_project_boxes_are_the_ones_djangos_widget_writes(owner, project, other_project):
    organization = project.organization
    projects = [other_project, project]  # by name: Billing, Checkout
    client = logged_in(owner)

    unbound = html(client.get(org_url(organization)))
    assert boxes(unbound) == widget_boxes(
        KeyCreateForm(kind=KeyKind.ORGANIZATION, projects=projects)
    )

    data = {"name": "", "permissions": ["analysis:read"], "project_ids": [str(project.id)]}
    refused = html(client.post(org_url(organization), data))  # no name: sent back
    form = KeyCreateForm(data, kind=KeyKind.ORGANIZATION, projects=projects)
    assert boxes(refused) == widget_boxes(form)
    assert sum(" checked>" in box for box in boxes(refused)) == 1
