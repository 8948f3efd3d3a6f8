"""`lastUsedAt` (SPEC §4.7): written at most once a minute, only for authenticated use,
and never at the cost of the request."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.analyses.models import Analysis
from apps.apikeys.models import ApiKey
from apps.apikeys.services import revoke_key
from tests.analyses.helpers import send
from tests.apikeys.auth_helpers import ENDPOINT, READ, assert_error, call

pytestmark = pytest.mark.django_db


def _last_use_writes(ctx) -> list[str]:
    return [
        q["sql"]
        for q in ctx.captured_queries
        if q["sql"].lstrip().upper().startswith("UPDATE") and "last_used_at" in q["sql"]
    ]


@pytest.mark.parametrize("who", ["pub", "secret", "org"])
def test_a_burst_of_requests_writes_last_used_at_once(api_client, credential, project, who):
    cred = credential(who)
    with CaptureQueriesContext(connection) as ctx:
        for _ in range(20):
            response = send(
                api_client,
                "GET",
                "/v1/analyses",
                credential=cred.token,
                project_id=cred.project_header,
            )
            assert response.status_code == 200
    assert len(_last_use_writes(ctx)) == 1
    api_key = ApiKey.objects.get()
    assert timezone.now() - api_key.last_used_at < timedelta(seconds=30)
    expected_project = project.id if who == "org" else None
    assert api_key.last_used_project_id == expected_project


def test_last_used_at_is_written_again_after_a_minute(api_client, credential):
    cred = credential("secret")
    send(api_client, "GET", "/v1/analyses", credential=cred.token)
    minute_ago = timezone.now() - timedelta(seconds=61)
    ApiKey.objects.update(last_used_at=minute_ago)
    with CaptureQueriesContext(connection) as ctx:
        send(api_client, "GET", "/v1/analyses", credential=cred.token)
    assert len(_last_use_writes(ctx)) == 1
    assert ApiKey.objects.get().last_used_at > minute_ago


def test_org_key_records_the_project_it_was_last_used_on(
    api_client, credential, project, other_project
):
    cred = credential("org")
    send(api_client, "GET", "/v1/config", credential=cred.token, project_id=project.id)
    ApiKey.objects.update(last_used_at=timezone.now() - timedelta(minutes=5))
    send(api_client, "GET", "/v1/config", credential=cred.token, project_id=other_project.id)
    assert ApiKey.objects.get().last_used_project_id == other_project.id


def test_authenticated_but_refused_requests_still_count_as_use(api_client, credential):
    """`lastUsedAt` tells whether anything still holds the key (SPEC §4.7, roll)."""
    cred = credential("secret", permissions=[READ])
    response = send(api_client, "GET", "/v1/config", credential=cred.token)
    assert_error(response, 403, "PERMISSION_DENIED")
    assert ApiKey.objects.get().last_used_at is not None


def test_refused_keys_do_not_count_as_use(api_client, credential, owner):
    cred = credential("secret")
    revoke_key(actor=owner, api_key=ApiKey.objects.get())
    send(api_client, "GET", "/v1/analyses", credential=cred.token)
    assert ApiKey.objects.get().last_used_at is None


@pytest.fixture
def last_use_write_refused():
    """A database trigger that makes every write of `last_used_at` fail (a real fault)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE FUNCTION refuse_last_use() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'last use refused'; END $$"
            )
            cursor.execute(
                "CREATE TRIGGER refuse_last_use BEFORE UPDATE OF last_used_at "
                "ON apikeys_apikey FOR EACH ROW EXECUTE FUNCTION refuse_last_use()"
            )
        else:
            cursor.execute(
                "CREATE TRIGGER refuse_last_use BEFORE UPDATE OF last_used_at "
                "ON apikeys_apikey BEGIN SELECT RAISE(ABORT, 'last use refused'); END"
            )
    # The test transaction is rolled back afterwards, trigger and function included.


@pytest.mark.parametrize("who", ["secret", "org"])
def test_request_succeeds_when_last_used_at_cannot_be_written(
    api_client, credential, world, last_use_write_refused, who, caplog
):
    cred = credential(who)
    for name in ("analyses-list", "analyses-create", "log-source-create"):
        endpoint = ENDPOINT[name]
        response = call(api_client, endpoint, cred, world)
        assert response.status_code == endpoint.success, response.content
    assert ApiKey.objects.get().last_used_at is None
    assert Analysis.objects.filter(title="t").count() == 1  # the create was not rolled back
    assert "could not record last use" in caplog.text
