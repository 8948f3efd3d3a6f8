"""The other SPEC §3 codes of the project-scoped endpoints, and the order of the checks."""

from __future__ import annotations

import pytest

from apps.apikeys.models import ApiKey
from apps.apikeys.services import revoke_key
from tests.analyses.helpers import send
from tests.apikeys.auth_helpers import READ, assert_error

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/v1/analyses"),
        ("PUT", "/v1/analyses/{analysis}"),
        ("PATCH", "/v1/analyses/{analysis}"),
        ("GET", "/v1/analyses/{analysis}/follow-ups"),
        ("DELETE", "/v1/analyses/{analysis}/feedback"),
        ("PATCH", "/v1/config"),
        ("GET", "/v1/config/channels"),
    ],
)
def test_unsupported_method_is_method_not_allowed(api_client, credential, world, method, path):
    cred = credential("secret")
    response = send(api_client, method, path.format(**world), credential=cred.token)
    assert_error(response, 405, "METHOD_NOT_ALLOWED")


def test_invalid_body_is_validation_error_with_fields(api_client, credential):
    cred = credential("secret")
    response = send(
        api_client, "POST", "/v1/analyses", credential=cred.token, body={"title": 1, "input": ""}
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert set(error["details"]["fields"]) == {"title", "input"}


def test_unknown_analysis_is_not_found(api_client, credential):
    cred = credential("secret")
    response = send(
        api_client,
        "GET",
        "/v1/analyses/7d2c3a2e-0000-4000-8000-000000000000",
        credential=cred.token,
    )
    assert_error(response, 404, "NOT_FOUND")


class TestOrderOfChecks:
    """SPEC §3: header shape → prefix → sunset → checksum → lookup → revoked → expired →
    project resolution → permission."""

    def test_revocation_is_reported_before_a_bad_project_id(self, api_client, credential, owner):
        cred = credential("org")
        revoke_key(actor=owner, api_key=ApiKey.objects.get())
        response = send(api_client, "GET", "/v1/config", credential=cred.token, project_id="nope")
        assert_error(response, 401, "KEY_REVOKED")

    def test_project_resolution_comes_before_permission(
        self, api_client, credential, other_project
    ):
        cred = credential("secret", permissions=[READ])
        response = send(
            api_client, "GET", "/v1/config", credential=cred.token, project_id=other_project.id
        )
        assert_error(response, 403, "PROJECT_MISMATCH")

    def test_permission_comes_before_body_validation(self, api_client, credential):
        cred = credential("secret", permissions=[READ])
        response = send(api_client, "POST", "/v1/analyses", credential=cred.token, body=[1])
        assert_error(response, 403, "PERMISSION_DENIED")

    def test_authentication_comes_before_method(self, api_client):
        response = api_client.delete("/v1/analyses", HTTP_AUTHORIZATION="Basic x")
        assert_error(response, 401, "AUTHORIZATION_MALFORMED")
