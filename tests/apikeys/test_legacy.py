"""Legacy keys (`tb_`, `ss_live_`) from import to sunset (SPEC §2.3, §3).

Deprecation/Sunset headers: on every response to a request that a legacy key
authenticated — successes and errors raised after authentication (403, 404)
alike — and to one its own IP list refused (the key works, from elsewhere). A
legacy key that fails authentication (unknown, revoked, sunset) is not a
working legacy key, so its 401 carries no such headers.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.services import start_session
from apps.apikeys import keyformat
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.legacy import LegacyKeySpec, import_legacy_keys
from apps.apikeys.models import ApiKey, active_at, expired_at
from apps.apikeys.services import revoke_key
from apps.orgs.access import has_permission, resolve_project
from core.permissions import Permission
from core.principal import Principal
from tests.conftest import LEGACY_DEPRECATED_AT, LEGACY_SUNSET_AT, bearer
from tests.factories import make_key
from tests.servers import GunicornServer

TB_KEY = "tb_7Hq2Wm9ZxR4tLp0sVb3N"
LIVE_KEY = "ss_live_Kc81_dE-fG5hJ6kLmN0p"
UNKNOWN_LEGACY_KEY = "tb_NeverImported12345678"
#: The headers for the moments `before_the_sunset` pins (SPEC §8's defaults), written out.
EXPECTED_HEADERS = {"Deprecation": "@1795651200", "Sunset": "Wed, 26 May 2027 00:00:00 GMT"}

# Every test here starts between the deprecation and the sunset, whatever today's date;
# the tests about the sunset move it themselves.
pytestmark = pytest.mark.usefixtures("before_the_sunset")


def import_key(project, key: str, permissions: list[str], name: str = "Legacy") -> ApiKey:
    import_legacy_keys(
        specs=[LegacyKeySpec(key=key, project=project, name=name, permissions=permissions)]
    )
    return ApiKey.objects.get(digest=keyformat.digest(key))


@pytest.fixture
def read_only_legacy_key(project) -> ApiKey:
    """A `tb_` key that may read analyses and nothing else."""
    return import_key(project, TB_KEY, [Permission.ANALYSIS_READ])


def error_code(response) -> str:
    return response.json()["error"]["code"]


def assert_legacy_headers(response) -> None:
    for name, value in EXPECTED_HEADERS.items():
        assert response[name] == value


def assert_no_legacy_headers(response) -> None:
    assert "Deprecation" not in response
    assert "Sunset" not in response


def test_imported_key_authenticates_on_me_with_its_project_and_permissions(
    api_client, project, read_only_legacy_key
):
    response = api_client.get("/v1/me", **bearer(TB_KEY))

    assert response.status_code == 200
    body = response.json()
    assert body["type"] == "key"
    assert body["key"] == {
        "id": str(read_only_legacy_key.id),
        "name": "Legacy",
        "prefix": "tb_7Hq2W",  # a quarter of its 20 secret characters
        "type": "secret",
        "scope": "project",
        "permissions": ["analysis:read"],
        "legacy": True,
    }
    assert body["project"] == {"id": str(project.id), "name": project.name}
    assert body["organization"]["id"] == str(project.organization_id)
    assert_legacy_headers(response)


def test_ss_live_keys_authenticate_too(api_client, project):
    import_key(project, LIVE_KEY, [Permission.CONFIG_READ])

    response = api_client.get("/v1/me", **bearer(LIVE_KEY))

    assert response.status_code == 200
    assert response.json()["key"]["prefix"] == "ss_live_Kc81_"
    assert_legacy_headers(response)


def test_legacy_key_resolves_its_own_project_with_its_stored_permissions(
    project, other_project, read_only_legacy_key
):
    principal = Principal(key=read_only_legacy_key)

    assert resolve_project(principal, None) == project
    assert has_permission(principal, project, Permission.ANALYSIS_READ)
    assert not has_permission(principal, project, Permission.ANALYSIS_CREATE)
    assert not has_permission(principal, other_project, Permission.ANALYSIS_READ)


def test_legacy_key_reads_analyses_of_its_project(api_client, read_only_legacy_key):
    response = api_client.get("/v1/analyses", **bearer(TB_KEY))

    assert response.status_code == 200
    assert response.json()["results"] == []
    assert_legacy_headers(response)


def test_legacy_key_lacking_a_permission_gets_403_with_the_headers(
    api_client, read_only_legacy_key
):
    created = api_client.post(
        "/v1/analyses", {"title": "t", "input": "x"}, format="json", **bearer(TB_KEY)
    )
    config = api_client.get("/v1/config", **bearer(TB_KEY))

    for response, required in ((created, "analysis:create"), (config, "config:read")):
        assert response.status_code == 403
        assert error_code(response) == "PERMISSION_DENIED"
        assert response.json()["error"]["details"] == {"required": required}
        assert_legacy_headers(response)


def test_legacy_key_with_config_read_reads_the_configuration(api_client, project):
    import_key(project, LIVE_KEY, [Permission.CONFIG_READ])

    response = api_client.get("/v1/config", **bearer(LIVE_KEY))

    assert response.status_code == 200
    assert set(response.json()) == {"logSources", "channels"}
    assert_legacy_headers(response)


def test_legacy_key_naming_another_project_gets_project_mismatch_with_the_headers(
    api_client, other_project, read_only_legacy_key
):
    response = api_client.get(
        "/v1/analyses", HTTP_X_PROJECT_ID=str(other_project.id), **bearer(TB_KEY)
    )

    assert response.status_code == 403
    assert error_code(response) == "PROJECT_MISMATCH"
    assert_legacy_headers(response)


def test_legacy_key_on_key_management_gets_forbidden_with_the_headers(
    api_client, project, read_only_legacy_key
):
    response = api_client.get(f"/v1/projects/{project.id}/api-keys", **bearer(TB_KEY))

    assert response.status_code == 403
    assert error_code(response) == "KEY_MANAGEMENT_FORBIDDEN"
    assert_legacy_headers(response)


def test_legacy_key_refused_by_its_ip_list_gets_ip_not_allowed_with_the_headers(
    api_client, read_only_legacy_key
):
    """It still works, from its listed networks: its owner is told of the sunset too."""
    ApiKey.objects.filter(pk=read_only_legacy_key.pk).update(allowed_ips=["203.0.113.0/24"])

    response = api_client.get("/v1/me", **bearer(TB_KEY))

    assert response.status_code == 403
    assert error_code(response) == "IP_NOT_ALLOWED"
    assert_legacy_headers(response)


def test_new_format_keys_get_no_legacy_headers(api_client, project):
    _, plaintext = make_key(KeyKind.SECRET, project=project)

    response = api_client.get("/v1/me", **bearer(plaintext))

    assert response.status_code == 200
    assert_no_legacy_headers(response)


def test_unknown_legacy_key_before_the_sunset_is_key_invalid(api_client, read_only_legacy_key):
    response = api_client.get("/v1/me", **bearer(UNKNOWN_LEGACY_KEY))

    assert response.status_code == 401
    assert error_code(response) == "KEY_INVALID"
    assert response["WWW-Authenticate"] == 'Bearer realm="sigsentry", error="invalid_token"'
    assert_no_legacy_headers(response)
    assert UNKNOWN_LEGACY_KEY not in response.content.decode()


def test_malformed_legacy_key_is_key_invalid_without_a_query(api_client, db):
    with CaptureQueriesContext(connection) as queries:
        response = api_client.get("/v1/me", **bearer("tb_short"))

    assert error_code(response) == "KEY_INVALID"
    assert len(queries) == 0


def test_revoked_legacy_key_is_key_revoked(api_client, read_only_legacy_key):
    revoke_key(actor=None, api_key=read_only_legacy_key, reason="admin")

    response = api_client.get("/v1/me", **bearer(TB_KEY))

    assert response.status_code == 401
    assert error_code(response) == "KEY_REVOKED"
    assert_no_legacy_headers(response)


@pytest.mark.parametrize(
    "credential",
    [TB_KEY, LIVE_KEY, UNKNOWN_LEGACY_KEY, "tb_short", "ss_live_x"],
    ids=["known-tb", "known-ss-live", "unknown", "malformed-tb", "malformed-ss-live"],
)
def test_after_the_sunset_every_legacy_credential_is_deprecated_without_a_query(
    api_client, project, read_only_legacy_key, credential
):
    import_key(project, LIVE_KEY, [Permission.CONFIG_READ], name="Live")

    with (
        override_settings(LEGACY_KEYS_SUNSET_AT=timezone.now() - timedelta(seconds=1)),
        CaptureQueriesContext(connection) as queries,
    ):
        response = api_client.get("/v1/analyses", **bearer(credential))

    assert response.status_code == 401
    assert error_code(response) == "KEY_FORMAT_DEPRECATED"
    assert response["WWW-Authenticate"] == 'Bearer realm="sigsentry", error="invalid_token"'
    assert len(queries) == 0
    assert credential not in response.content.decode()


def test_the_sunset_takes_effect_at_its_exact_moment(
    api_client, read_only_legacy_key, time_machine
):
    """The clock pinned (not ticking): a millisecond before LEGACY_KEYS_SUNSET_AT the key
    works, and at that very instant it is KEY_FORMAT_DEPRECATED. On a ticking clock the
    instant has always passed by the request, and `>` in place of `>=` went unseen."""
    time_machine.move_to(LEGACY_SUNSET_AT - timedelta(milliseconds=1), tick=False)
    before = api_client.get("/v1/me", **bearer(TB_KEY))
    time_machine.move_to(LEGACY_SUNSET_AT, tick=False)
    at = api_client.get("/v1/me", **bearer(TB_KEY))

    assert before.status_code == 200, before.content
    assert at.status_code == 401
    assert error_code(at) == "KEY_FORMAT_DEPRECATED"


def test_after_the_sunset_a_legacy_key_is_listed_expired_and_no_longer_active(
    owner, project, read_only_legacy_key
):
    """It was listed `active` while every request with it failed (a left-over of an
    earlier review): the list, the key page's filters and the notices' "active keys"."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {start_session(owner).access}")
    url = f"/v1/projects/{project.id}/api-keys"
    before = client.get(url).json()["results"]

    with override_settings(LEGACY_KEYS_SUNSET_AT=timezone.now()):
        after = client.get(url).json()["results"]
        active = ApiKey.objects.filter(active_at(timezone.now()))

        assert [k["status"] for k in before] == ["active"]
        assert [(k["legacy"], k["status"]) for k in after] == [(True, "expired")]
        assert not active.filter(pk=read_only_legacy_key.pk).exists()
        assert read_only_legacy_key.status_at(timezone.now()) == "expired"
        # one rule for the admin's status filter too (a review: in neither list)
        expired = ApiKey.objects.filter(expired_at(timezone.now()))
        assert list(expired.values_list("pk", flat=True)) == [read_only_legacy_key.pk]


def test_headers_follow_the_configured_moments(api_client, read_only_legacy_key):
    deprecated_at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    sunset_at = datetime(2099, 12, 31, 23, 59, 59, tzinfo=UTC)

    with override_settings(
        LEGACY_KEYS_DEPRECATED_AT=deprecated_at, LEGACY_KEYS_SUNSET_AT=sunset_at
    ):
        response = api_client.get("/v1/me", **bearer(TB_KEY))

    assert response["Deprecation"] == f"@{int(deprecated_at.timestamp())}"
    assert response["Sunset"] == "Thu, 31 Dec 2099 23:59:59 GMT"


def _get(url: str, credential: str) -> tuple[int, dict, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {credential}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read())


@pytest.mark.slow
def test_real_server_serves_a_legacy_key_with_deprecation_headers(transactional_db, project):
    import_key(project, TB_KEY, [Permission.ANALYSIS_READ])
    # A server of its own: it keeps this test's clock (tests/clocked_gunicorn.py), and its
    # legacy moments are pinned like this process's.
    server = GunicornServer(
        env={
            "LEGACY_KEYS_DEPRECATED_AT": LEGACY_DEPRECATED_AT.isoformat(),
            "LEGACY_KEYS_SUNSET_AT": LEGACY_SUNSET_AT.isoformat(),
        },
        workers=1,
    )
    server.start()
    try:
        status, headers, body = _get(server.url + "/v1/analyses", TB_KEY)
    finally:
        server.stop()

    assert status == 200, body
    assert {name: headers[name] for name in EXPECTED_HEADERS} == EXPECTED_HEADERS


@pytest.mark.slow
def test_real_server_past_the_sunset_refuses_known_and_unknown_legacy_keys(
    transactional_db, project
):
    import_key(project, TB_KEY, [Permission.ANALYSIS_READ])
    server = GunicornServer(
        env={
            "LEGACY_KEYS_DEPRECATED_AT": "2019-01-01T00:00:00Z",
            "LEGACY_KEYS_SUNSET_AT": "2020-01-01T00:00:00Z",
        },
        workers=1,
    )
    server.start()
    try:
        answers = {
            credential: _get(server.url + "/v1/me", credential)
            for credential in (TB_KEY, UNKNOWN_LEGACY_KEY, "ss_live_" + uuid.uuid4().hex)
        }
    finally:
        server.stop()

    for credential, (status, headers, body) in answers.items():
        assert status == 401, credential
        assert body["error"]["code"] == "KEY_FORMAT_DEPRECATED"
        assert "Deprecation" not in headers
