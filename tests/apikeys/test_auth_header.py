"""The Authorization header (SPEC §3): its scheme, a missing or malformed header, and
credentials sent anywhere else."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.apikeys.auth_helpers import (
    ENDPOINTS,
    WWW_AUTHENTICATE,
    WWW_AUTHENTICATE_INVALID,
    WWW_AUTHENTICATE_MALFORMED,
    assert_error,
    call,
    mutate,
)

pytestmark = pytest.mark.django_db


def test_bearer_scheme_is_case_insensitive_and_spaces_are_tolerated(api_client, credential):
    key = credential("secret").token
    for header in (f"bearer {key}", f"BEARER {key}", f"Bearer   {key}", f" Bearer {key} "):
        response = api_client.get("/v1/analyses", HTTP_AUTHORIZATION=header)
        assert response.status_code == 200, header


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_no_credential_is_authentication_required(api_client, world, endpoint):
    response = call(api_client, endpoint, None, world)
    assert_error(response, 401, "AUTHENTICATION_REQUIRED")
    assert response["WWW-Authenticate"] == WWW_AUTHENTICATE


@pytest.mark.parametrize(
    "header",
    [
        "Basic dXNlcjpwYXNzd29yZA==",
        "Bearer",
        "Bearer ",
        "Bearer a b",
        "Bearer ss_secret_one ss_secret_two",
        "Bearer ss_secret_one, Bearer ss_secret_two",
        "Token abc",
        "Bearerabc",
        "Bearer\tabc",
        "Bearer abc\u00e9",
        "Bearer <script>",
        "",
        "Bearer " + "a" * 5000,
    ],
)
def test_malformed_authorization_is_refused_without_a_query(api_client, world, header):
    with CaptureQueriesContext(connection) as ctx:
        response = api_client.get("/v1/analyses", HTTP_AUTHORIZATION=header)
    assert_error(response, 401, "AUTHORIZATION_MALFORMED")
    # RFC 6750 §3.1: a request that is not `Bearer <token>` is invalid_request.
    assert response["WWW-Authenticate"] == WWW_AUTHENTICATE_MALFORMED
    assert ctx.captured_queries == []


def test_a_malformed_header_and_a_refused_credential_get_different_challenges(
    api_client, credential
):
    key = credential("secret").token
    malformed = api_client.get("/v1/me", HTTP_AUTHORIZATION=f"Basic {key}")
    refused = api_client.get("/v1/me", HTTP_AUTHORIZATION=f"Bearer {mutate(key, -1)}")
    assert (malformed.status_code, refused.status_code) == (401, 401)
    assert malformed["WWW-Authenticate"] == WWW_AUTHENTICATE_MALFORMED
    assert refused["WWW-Authenticate"] == WWW_AUTHENTICATE_INVALID


def test_credentials_in_the_query_string_are_ignored(api_client, credential, project):
    key = credential("secret").token
    token = credential("owner").token
    for query in (f"api_key={key}", f"access_token={token}", f"key={key}", f"token={token}"):
        response = api_client.get(f"/v1/analyses?{query}", HTTP_X_PROJECT_ID=str(project.id))
        assert_error(response, 401, "AUTHENTICATION_REQUIRED")
        assert response["WWW-Authenticate"] == WWW_AUTHENTICATE
