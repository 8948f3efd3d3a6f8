"""CORS for the browser SDK (SPEC §4.6) and origin-bound SDK keys (SPEC §4.7)."""

from __future__ import annotations

import pytest

from apps.apikeys.keyformat import KeyKind
from apps.apikeys.services import update_key
from tests.factories import make_key

pytestmark = pytest.mark.django_db

APP = "https://app.example.com"
EVIL = "https://evil.example.net"
ACAO = "Access-Control-Allow-Origin"


def preflight(client, path: str, origin: str = APP, method: str = "POST"):
    return client.options(
        path,
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD=method,
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, x-project-id",
    )


def listed(header_value: str) -> set[str]:
    return {part.strip().lower() for part in header_value.split(",")}


@pytest.fixture
def sdk_key(project):
    """(ApiKey, plaintext) of an SDK key bound to APP."""
    return make_key(KeyKind.PUBLIC, project=project, allowed_origins=[APP])


def get_analyses(client, key: str, origin: str | None):
    extra = {"HTTP_ORIGIN": origin} if origin is not None else {}
    return client.get("/v1/analyses", HTTP_AUTHORIZATION=f"Bearer {key}", **extra)


@pytest.mark.parametrize(
    "path", ["/v1/analyses", "/v1/analyses/0b6a1a0e-0000-4000-8000-000000000000/follow-ups"]
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_preflight_allows_the_sdk_headers_from_any_origin(api_client, path, method):
    response = preflight(api_client, path, method=method)
    assert response.status_code in (200, 204)
    assert response[ACAO] in ("*", APP)
    assert {"authorization", "x-project-id"} <= listed(response["Access-Control-Allow-Headers"])
    assert method.lower() in listed(response["Access-Control-Allow-Methods"])
    assert "Access-Control-Allow-Credentials" not in response


def test_preflight_needs_no_credential_and_touches_no_key(api_client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = preflight(api_client, "/v1/analyses", origin=EVIL)
    assert response.status_code in (200, 204)


@pytest.mark.parametrize("path", ["/v1/config", "/v1/config/log-sources"])
def test_configuration_is_not_open_to_browsers(api_client, path):
    response = preflight(api_client, path)
    assert ACAO not in response


def test_key_bound_to_origins_is_refused_from_another_origin(api_client, sdk_key):
    response = get_analyses(api_client, sdk_key[1], EVIL)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "ORIGIN_NOT_ALLOWED"
    assert ACAO not in response
    assert "WWW-Authenticate" not in response


def test_key_bound_to_origins_is_refused_without_an_origin(api_client, sdk_key):
    """Outside a browser there is no Origin; a bound key is for browsers on its origins only."""
    response = get_analyses(api_client, sdk_key[1], None)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "ORIGIN_NOT_ALLOWED"


@pytest.mark.parametrize("origin", [APP, "https://APP.example.com"])
def test_allowed_origin_is_echoed(api_client, sdk_key, origin):
    response = get_analyses(api_client, sdk_key[1], origin)
    assert response.status_code == 200
    assert response[ACAO] == origin
    assert "origin" in listed(response["Vary"])


def test_allowed_origin_gets_cors_on_errors_too(api_client, sdk_key):
    response = api_client.get(
        "/v1/analyses/not-an-id", HTTP_AUTHORIZATION=f"Bearer {sdk_key[1]}", HTTP_ORIGIN=APP
    )
    assert response.status_code == 404
    assert response[ACAO] == APP


@pytest.mark.parametrize("origin", ["null", "https://app.example.com.evil.net", APP + ":8443"])
def test_lookalike_origins_are_not_allowed(api_client, sdk_key, origin):
    response = get_analyses(api_client, sdk_key[1], origin)
    assert response.status_code == 403
    assert ACAO not in response


def test_key_without_allowed_origins_works_from_any_origin(api_client, project):
    _, key = make_key(KeyKind.PUBLIC, project=project)
    for origin in (APP, EVIL, None):
        response = get_analyses(api_client, key, origin)
        assert response.status_code == 200
        if origin is not None:
            assert response[ACAO] == "*"


def test_changing_allowed_origins_applies_to_the_next_request(api_client, sdk_key, owner):
    api_key, key = sdk_key
    assert get_analyses(api_client, key, EVIL).status_code == 403
    update_key(actor=owner, api_key=api_key, changes={"allowedOrigins": [APP, EVIL]})
    assert get_analyses(api_client, key, EVIL).status_code == 200
    update_key(actor=owner, api_key=api_key, changes={"allowedOrigins": []})
    assert get_analyses(api_client, key, "https://anyone.example.org").status_code == 200


def test_create_from_an_allowed_origin_works_across_origins(api_client, sdk_key, project):
    response = api_client.post(
        "/v1/analyses",
        {"title": "from the browser", "input": "TypeError: x is undefined"},
        format="json",
        HTTP_AUTHORIZATION=f"Bearer {sdk_key[1]}",
        HTTP_ORIGIN=APP,
        HTTP_X_PROJECT_ID=str(project.id),
    )
    assert response.status_code == 201
    assert response[ACAO] == APP


@pytest.mark.parametrize("bound", [False, True], ids=["any origin", "origin-bound"])
def test_a_browser_script_may_read_the_rate_limit_and_retry_headers(api_client, project, bound):
    """Without Access-Control-Expose-Headers a browser hides them from the page's script."""
    _api_key, key = make_key(
        KeyKind.PUBLIC,
        project=project,
        allowed_origins=[APP] if bound else [],
        rate_limit={"requests": 1, "perSeconds": 60},
    )

    answers = [get_analyses(api_client, key, APP) for _ in range(2)]

    assert [answer.status_code for answer in answers] == [200, 429]
    for answer in answers:
        assert answer[ACAO] == (APP if bound else "*")
        exposed = listed(answer["Access-Control-Expose-Headers"])
        assert {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"} <= exposed
        assert {"retry-after", "deprecation", "sunset"} <= exposed
