"""The project overview page: analyses are loaded by its script from /v1/analyses."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client

from apps.apikeys.keyformat import KeyKind
from tests.factories import make_key
from tests.pages import assert_no_inline_code, html, logged_in

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("role", ["owner", "admin", "member", "viewer"])
def test_overview_renders_for_every_role_with_the_project_for_the_script(request, role, project):
    response = logged_in(request.getfixturevalue(role)).get(f"/projects/{project.id}/")
    assert response.status_code == 200
    page = html(response)
    assert project.name in page
    assert f'data-project-id="{project.id}"' in page
    assert 'data-endpoint="/v1/analyses"' in page
    assert "/static/js/overview.js" in page
    for state in ("loading", "empty", "error", "list"):
        assert f'data-state="{state}"' in page
    assert_no_inline_code(page)


def test_overview_counts_active_keys(owner, project):
    make_key(KeyKind.PUBLIC, project=project)
    make_key(KeyKind.SECRET, project=project)
    revoked, _ = make_key(KeyKind.SECRET, project=project)
    revoked.revoked_at = revoked.created_at
    revoked.save()
    page = html(logged_in(owner).get(f"/projects/{project.id}/"))
    assert "active SDK key<" in page and "active API key<" in page


def test_outsider_gets_the_404_page(outsider, project):
    response = logged_in(outsider).get(f"/projects/{project.id}/")
    assert response.status_code == 404
    assert "Page not found" in html(response)
    assert project.name not in html(response)


def test_unknown_project_is_404(owner):
    assert logged_in(owner).get(f"/projects/{uuid.uuid4()}/").status_code == 404


def test_anonymous_visitor_goes_to_login(project):
    response = Client().get(f"/projects/{project.id}/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")
