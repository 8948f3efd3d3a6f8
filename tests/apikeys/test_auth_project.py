"""X-Project-Id (SPEC §2.2, §3): required, invalid, mismatched or out of reach."""

from __future__ import annotations

import pytest

from tests.analyses.helpers import send
from tests.apikeys.auth_helpers import ENDPOINTS, Credential, assert_error, call

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("header", [None, "", "   "])
@pytest.mark.parametrize("who", ["org", "member"])
def test_org_key_or_user_without_project_id_is_project_id_required(
    api_client, credential, world, who, header
):
    cred = credential(who)
    for endpoint in ENDPOINTS:
        response = call(api_client, endpoint, Credential(cred.token, header), world)
        assert_error(response, 400, "PROJECT_ID_REQUIRED")


@pytest.mark.parametrize("header", ["not-a-uuid", "123", "' OR 1=1 --", "0" * 33])
@pytest.mark.parametrize("who", ["pub", "secret", "org", "member"])
def test_project_id_that_is_not_a_uuid_is_project_id_invalid(api_client, credential, who, header):
    cred = credential(who)
    response = send(api_client, "GET", "/v1/analyses", credential=cred.token, project_id=header)
    assert_error(response, 400, "PROJECT_ID_INVALID")


@pytest.mark.parametrize(
    "spelling",
    [
        lambda id_: f"urn:uuid:{id_}",
        lambda id_: f"{{{id_}}}",
        lambda id_: id_.hex,
        lambda id_: f"{id_.hex[:8]}_{id_.hex[8:31]}",  # int() takes `_` between digits
    ],
    ids=["urn", "braces", "no-dashes", "underscore"],
)
@pytest.mark.parametrize("who", ["secret", "org", "member"])
def test_only_the_canonical_uuid_names_a_project(api_client, credential, project, who, spelling):
    """Found by an audit: `uuid.UUID` took each of these for the project's id (urn: → 200)."""
    cred = credential(who)
    header = spelling(project.id)
    response = send(api_client, "GET", "/v1/analyses", credential=cred.token, project_id=header)
    assert_error(response, 400, "PROJECT_ID_INVALID")
    upper = send(
        api_client, "GET", "/v1/analyses", credential=cred.token, project_id=str(project.id).upper()
    )
    assert upper.status_code == 200


@pytest.mark.parametrize("target", ["sibling", "foreign", "nonexistent"])
@pytest.mark.parametrize("who", ["pub", "secret"])
def test_project_key_naming_any_other_project_is_project_mismatch(
    api_client, credential, world, other_project, foreign_project, who, target
):
    cred = credential(who)
    project_id = {
        "sibling": other_project.id,
        "foreign": foreign_project.id,
        "nonexistent": "7d2c3a2e-0000-4000-8000-000000000000",
    }[target]
    for endpoint in ENDPOINTS:
        response = call(api_client, endpoint, Credential(cred.token, str(project_id)), world)
        assert_error(response, 403, "PROJECT_MISMATCH")


@pytest.mark.parametrize("target", ["foreign", "nonexistent"])
def test_org_key_naming_a_project_outside_its_organization_is_project_not_found(
    api_client, credential, world, foreign_project, target
):
    cred = credential("org")
    project_id = (
        foreign_project.id if target == "foreign" else "7d2c3a2e-0000-4000-8000-0000000000aa"
    )
    for endpoint in ENDPOINTS:
        response = call(api_client, endpoint, Credential(cred.token, str(project_id)), world)
        assert_error(response, 404, "PROJECT_NOT_FOUND")


def test_org_key_reaches_every_project_of_its_organization(
    api_client, credential, project, other_project
):
    cred = credential("org")
    for project_id in (str(project.id), f"  {str(other_project.id).upper()} "):
        response = send(
            api_client, "GET", "/v1/config", credential=cred.token, project_id=project_id
        )
        assert response.status_code == 200


@pytest.mark.parametrize("target", ["foreign", "nonexistent"])
def test_user_naming_a_project_of_another_organization_is_project_not_found(
    api_client, user_token, member, world, foreign_project, target
):
    project_id = (
        foreign_project.id if target == "foreign" else "7d2c3a2e-0000-4000-8000-0000000000bb"
    )
    cred = Credential(user_token(member), str(project_id))
    for endpoint in ENDPOINTS:
        assert_error(call(api_client, endpoint, cred, world), 404, "PROJECT_NOT_FOUND")
