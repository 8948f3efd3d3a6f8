"""The authentication decision's log line names the key it refused, and is never lost."""

import json
import logging

import pytest
from django.db import OperationalError, connection
from django.test import override_settings

from apps.apikeys.keyformat import KeyKind
from apps.apikeys.services import revoke_key
from tests.conftest import bearer
from tests.factories import make_key

pytestmark = pytest.mark.django_db


def _decisions(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "sigsentry.access"]


@pytest.fixture
def auth_log(caplog):
    caplog.set_level(logging.INFO, logger="sigsentry.access")
    return caplog


def test_a_refused_known_key_is_named_in_its_log_line(api_client, project, auth_log):
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)
    revoke_key(actor=None, api_key=api_key)

    assert api_client.get("/v1/me", **bearer(plaintext)).status_code == 401

    (record,) = _decisions(auth_log)
    assert record.auth_outcome == "KEY_REVOKED"
    assert record.key_id == str(api_key.id)
    assert record.key_prefix == api_key.prefix
    assert plaintext not in json.dumps(record.__dict__, default=str)


@pytest.mark.usefixtures("throttle_clock")
@override_settings(THROTTLE_RATES={"failed_auth_ip": (1, 60)})
def test_a_throttled_failure_is_still_logged(api_client, project, auth_log):
    for _ in range(3):
        api_client.get("/v1/me", **bearer("not-a-key"))

    outcomes = [r.auth_outcome for r in _decisions(auth_log)]
    assert outcomes == ["KEY_INVALID", "RATE_LIMITED", "RATE_LIMITED"]


@pytest.mark.parametrize("credential", ["key", "jwt"])
def test_a_credential_the_database_could_not_check_is_logged_as_unavailable(
    api_client, project, owner, user_token, auth_log, credential
):
    """The 503 of an outage during the lookup names what happened to the credential in its
    access line (and the metrics' decisions): it was sent, and never checked."""
    _api_key, plaintext = make_key(KeyKind.SECRET, project=project)
    token = plaintext if credential == "key" else user_token(owner)

    def outage(execute, sql, params, many, context):
        raise OperationalError("connection refused")

    with connection.execute_wrapper(outage):
        response = api_client.get("/v1/me", **bearer(token))

    assert response.status_code == 503
    (record,) = _decisions(auth_log)
    assert record.auth_outcome == "SERVICE_UNAVAILABLE"
    assert not hasattr(record, "key_id") and not hasattr(record, "user_id")
