"""Properties: no Authorization or X-Project-Id value causes a server error, and every
refusal is a SPEC §3 code."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from apps.apikeys.keyformat import KeyKind
from tests.analyses.helpers import error_code
from tests.apikeys.auth_helpers import READ_ENDPOINTS
from tests.factories import make_key

pytestmark = pytest.mark.django_db


#: Every code of SPEC §3.
SPEC_CODES = frozenset(
    {
        "AUTHENTICATION_REQUIRED",
        "AUTHORIZATION_MALFORMED",
        "KEY_INVALID",
        "KEY_REVOKED",
        "KEY_EXPIRED",
        "KEY_FORMAT_DEPRECATED",
        "TOKEN_INVALID",
        "TOKEN_EXPIRED",
        "PROJECT_ID_REQUIRED",
        "PROJECT_ID_INVALID",
        "PROJECT_MISMATCH",
        "PROJECT_NOT_FOUND",
        "PERMISSION_DENIED",
        "KEY_MANAGEMENT_FORBIDDEN",
        "PERMISSIONS_LOCKED",
        "VALIDATION_ERROR",
        "NOT_FOUND",
        "METHOD_NOT_ALLOWED",
        "ORIGIN_NOT_ALLOWED",
        "LAST_OWNER",
        "INVALID_CREDENTIALS",
        "RATE_LIMITED",
        "SERVICE_UNAVAILABLE",
    }
)


_KEYISH = st.sampled_from(["ss_pub_", "ss_secret_", "ss_org_", "tb_", "ss_live_", "ss_", "eyJ", ""])
_TOKEN_CHARS = st.characters(codec="ascii", exclude_characters="\r\n")
AUTHORIZATION_VALUES = st.one_of(
    st.text(max_size=100),
    st.builds(
        lambda scheme, prefix, rest: f"{scheme}{prefix}{rest}",
        st.sampled_from(["Bearer ", "bearer ", "Bearer  ", "Basic ", "", "Bearer\t"]),
        _KEYISH,
        st.text(alphabet=_TOKEN_CHARS, max_size=80),
    ),
    st.builds(
        lambda body: f"Bearer {body}",
        st.from_regex(
            r"[A-Za-z0-9_\-]{1,40}\.[A-Za-z0-9_\-]{1,60}\.[A-Za-z0-9_\-]{0,40}", fullmatch=True
        ),
    ),
)
PROJECT_ID_VALUES = st.one_of(st.none(), st.text(max_size=60), st.uuids().map(str))
_property_settings = hypothesis_settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _assert_spec_error_or_success(response, sent: str) -> None:
    assert response.status_code < 500, response.content
    if response.status_code >= 400:
        assert error_code(response) in SPEC_CODES
    if len(sent) >= 12:
        assert sent not in response.content.decode()


@_property_settings
@given(
    authorization=AUTHORIZATION_VALUES,
    project_id=PROJECT_ID_VALUES,
    endpoint=st.sampled_from(READ_ENDPOINTS),
)
def test_no_authorization_or_project_header_value_causes_a_server_error(
    api_client, world, authorization, project_id, endpoint
):
    cache.clear()  # each example starts below the failed-authentication throttle
    extra = {"HTTP_AUTHORIZATION": authorization}
    if project_id is not None:
        extra["HTTP_X_PROJECT_ID"] = project_id
    response = api_client.get(endpoint.path.format(**world), **extra)
    _assert_spec_error_or_success(response, authorization)
    assert response.status_code in (400, 401, 403, 404)


@pytest.fixture
def keys_by_kind(project, organization):
    return {
        "secret": make_key(KeyKind.SECRET, project=project)[1],
        "org": make_key(KeyKind.ORGANIZATION, organization=organization)[1],
    }


@_property_settings
@given(project_id=PROJECT_ID_VALUES, who=st.sampled_from(["secret", "org"]))
def test_any_project_header_with_a_valid_key_is_answered_per_spec(
    api_client, keys_by_kind, world, project_id, who
):
    cache.clear()
    extra = {"HTTP_AUTHORIZATION": f"Bearer {keys_by_kind[who]}"}
    if project_id is not None:
        extra["HTTP_X_PROJECT_ID"] = project_id
    response = api_client.get("/v1/analyses", **extra)
    _assert_spec_error_or_success(response, keys_by_kind[who])
    assert response.status_code in (200, 400, 403, 404)
