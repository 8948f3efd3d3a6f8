"""Tenant isolation: callers outside a project get no data and change nothing."""

from __future__ import annotations

import pytest

from apps.apikeys.keyformat import KeyKind
from tests.analyses.helpers import send
from tests.apikeys.auth_helpers import ENDPOINTS, Credential, assert_error, call, snapshot
from tests.factories import make_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def intruders(foreign_project, outsider, user_token, project, owner, member):
    """Credentials of callers outside `project`, each aimed at it as directly as it can be.

    `project`'s organization has an owner and a member: with no members, a join of the
    project to its memberships finds no row whoever the caller is, and a tenant check that
    forgot the caller (the outsider let in by someone else's membership) would go unseen.
    """
    rival_org_key = make_key(KeyKind.ORGANIZATION, organization=foreign_project.organization)[1]
    rival_secret = make_key(KeyKind.SECRET, project=foreign_project)[1]
    return {
        "rival-org-key": (Credential(rival_org_key, str(project.id)), 404, "PROJECT_NOT_FOUND"),
        "outsider-user": (
            Credential(user_token(outsider), str(project.id)),
            404,
            "PROJECT_NOT_FOUND",
        ),
        "rival-project-key": (Credential(rival_secret, str(project.id)), 403, "PROJECT_MISMATCH"),
    }


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
@pytest.mark.parametrize("intruder", ["rival-org-key", "outsider-user", "rival-project-key"])
def test_callers_outside_the_project_get_no_data_and_change_nothing(
    api_client, intruders, world, endpoint, intruder
):
    cred, status, code = intruders[intruder]
    before = snapshot()
    response = call(api_client, endpoint, cred, world)
    assert_error(response, status, code)
    assert snapshot() == before
    for private in (b"our incident", b"our private logs", b"our-source", b"our-channel", b"#ours"):
        assert private not in response.content


@pytest.mark.parametrize("endpoint", [e for e in ENDPOINTS if "{" in e.path], ids=lambda e: e.name)
@pytest.mark.parametrize("who", ["rival-own-project", "sibling-project-key"])
def test_ids_of_another_project_are_not_found_from_the_callers_own_project(
    api_client, world, foreign_project, other_project, endpoint, who
):
    home = foreign_project if who == "rival-own-project" else other_project
    cred = Credential(make_key(KeyKind.SECRET, project=home)[1], None)
    before = snapshot()
    response = call(api_client, endpoint, cred, world)
    assert_error(response, 404, "NOT_FOUND")
    assert snapshot() == before


def test_lists_from_another_project_never_contain_this_projects_data(
    api_client, world, other_project, foreign_project
):
    for home in (other_project, foreign_project):
        key = make_key(KeyKind.SECRET, project=home)[1]
        analyses = send(api_client, "GET", "/v1/analyses", credential=key)
        config = send(api_client, "GET", "/v1/config", credential=key)
        assert analyses.json() == {"results": [], "next": None}
        assert config.json() == {"logSources": [], "channels": []}
