"""A user-chosen name in a page's `<title>` is isolated (U+2068 … U+2069) where it could
reorder the title, as emails' subjects isolate it (`core.mail.name_in_text`): a title is
plain text (no `<bdi>` there), shown in tabs, history and bookmarks. A name stored before
the name rules with an unclosed override (U+202E) must not reverse the rest of the title
("· SigSentry"), and a right-to-left name must not take the words beside it; a name that
reads the same either way is left bare."""

from __future__ import annotations

import re

import pytest

from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from apps.orgs.models import Organization
from apps.projects.models import Project
from tests.factories import make_key
from tests.pages import logged_in

pytestmark = pytest.mark.django_db

OVERRIDE = "Acme \u202eevil"  # stored before the name rules: .update() skips them
TITLE = re.compile(r"<title>(.*?)</title>", re.DOTALL)


def title(response) -> str:
    assert response.status_code == 200
    return TITLE.search(response.content.decode()).group(1)  # the head's; charts have their own


@pytest.fixture
def named(owner, organization, project):
    Organization.objects.filter(pk=organization.pk).update(name=OVERRIDE)
    Project.objects.filter(pk=project.pk).update(name=OVERRIDE)
    key, _ = make_key(KeyKind.SECRET, project=project, actor=owner)
    ApiKey.objects.filter(pk=key.pk).update(name=OVERRIDE)
    return key


@pytest.mark.parametrize(
    "page",
    [
        lambda org, project, key: f"/projects/{project.id}/",
        lambda org, project, key: f"/projects/{project.id}/api-keys/",
        lambda org, project, key: f"/projects/{project.id}/sdk-keys/",
        lambda org, project, key: f"/projects/{project.id}/api-keys/{key.id}/",
        lambda org, project, key: f"/orgs/{org.id}/members/",
        lambda org, project, key: f"/orgs/{org.id}/audit-log/",
        lambda org, project, key: f"/orgs/{org.id}/webhooks/",
    ],
    ids=["overview", "api-keys", "sdk-keys", "key", "members", "audit-log", "webhooks"],
)
def test_a_name_in_a_page_title_is_isolated(owner, organization, project, named, page):
    text = title(logged_in(owner).get(page(organization, project, named)))
    assert "\u202e" in text  # the name is there, as stored
    assert re.search("\u2068[^<\u2069]*\u202e[^<\u2069]*\u2069", text), text
    assert text.endswith(" · SigSentry"), text


def test_a_name_that_reads_the_same_either_way_is_left_bare_in_the_title(owner, project):
    text = title(logged_in(owner).get(f"/projects/{project.id}/"))
    assert text == f"{project.name} · SigSentry"
