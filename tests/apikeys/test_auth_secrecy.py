"""Secrecy: a credential is never echoed in a response, written to a log or stored."""

from __future__ import annotations

import hashlib
import json
import logging

import pytest
from django.db import connection

from apps.apikeys import keyformat
from apps.apikeys.leaks import report_leaked_keys
from apps.apikeys.models import ApiKey
from apps.apikeys.services import revoke_key, roll_key
from core.logging import JsonFormatter
from tests.analyses.helpers import send
from tests.apikeys.auth_helpers import ENDPOINTS, call, mutate
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


def _random_part(key: str) -> str:
    return keyformat.KEY_PATTERN.fullmatch(key).group(2)


def _hidden_parts(key: str) -> list[str]:
    """Pieces of a key that nothing may show: the display prefix reveals only the first
    8 random characters, so any 8 characters past them (or the random part's end) leak it."""
    random_part = _random_part(key)
    return [random_part[8:16], random_part[-8:]]


def test_credentials_are_never_echoed_in_responses_or_logs(
    api_client, credential, world, owner, other_project, caplog
):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sigsentry")
    creds = [credential(who) for who in ("pub", "secret", "org", "member")]
    caplog.clear()  # the factories log the test users' password at DEBUG; the app must not
    responses = []
    for cred in creds:
        for endpoint in ENDPOINTS:
            responses.append(call(api_client, endpoint, cred, world))
        responses.append(
            send(api_client, "GET", "/v1/config", credential=cred.token, project_id="bad")
        )
        responses.append(
            send(
                api_client, "GET", "/v1/config", credential=cred.token, project_id=other_project.id
            )
        )
        responses.append(send(api_client, "GET", "/v1/me", credential=cred.token))
        responses.append(send(api_client, "GET", "/v1/me", credential=mutate(cred.token, 12)))
        responses.append(api_client.get("/v1/me", HTTP_AUTHORIZATION=f"Basic {cred.token}"))
        responses.append(api_client.get("/v1/me", HTTP_AUTHORIZATION=f"Bearer {cred.token} x"))
    for api_key in ApiKey.objects.all():
        revoke_key(actor=owner, api_key=api_key)
    for cred in creds[:3]:
        responses.append(send(api_client, "GET", "/v1/analyses", credential=cred.token))
    keys = [c.token for c in creds[:3]]
    session_token = creds[3].token
    secrets = [
        *keys,
        *(part for key in keys for part in _hidden_parts(key)),
        *(hashlib.sha256(key.encode()).hexdigest() for key in keys),
        session_token,
        session_token.rsplit(".", 1)[1],  # the JWT's signature
        PASSWORD,  # every factory user's
    ]
    for response in responses:
        exposed = response.content.decode() + repr(sorted(response.items()))
        for secret in secrets:
            assert secret not in exposed
    lines = _log_lines(caplog.records)
    decisions = [entry for entry in map(json.loads, lines) if entry["logger"] == "sigsentry.access"]
    # The scan reads the structured fields, not only the messages.
    assert {"auth_outcome", "client_ip", "key_id", "key_prefix", "user_id"} <= {
        name for entry in decisions for name in entry
    }
    leaks = [(secret[:12], line) for line in lines for secret in secrets if secret in line]
    assert leaks == []
    assert {r.status_code for r in responses} >= {200, 201, 204, 400, 401, 403}


def _log_lines(records: list[logging.LogRecord]) -> list[str]:
    """Each record as the line that reaches the log: the JSON object, fields included."""
    formatter = JsonFormatter()
    return [formatter.format(record) for record in records]


def _database_text() -> list[tuple[str, str]]:
    """Every cell of every table as text (bytes decoded as UTF-8, anything else via str)."""
    cells = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            for row in cursor.fetchall():
                for cell in row:
                    if isinstance(cell, bytes | memoryview):
                        cell = bytes(cell).decode("utf-8", "replace")
                    cells.append((table, str(cell)))
    return cells


def test_database_never_holds_a_key_or_session_token(
    api_client, credential, world, owner, organization, project
):
    creds = {who: credential(who) for who in ("pub", "secret", "org", "owner")}
    rolled = roll_key(
        actor=owner, api_key=ApiKey.objects.get(scope="project", type="secret"), grace_seconds=60
    )
    for cred in creds.values():
        for endpoint in ENDPOINTS:
            call(api_client, endpoint, cred, world)
        send(api_client, "GET", "/v1/analyses?api_key=" + cred.token)
    send(api_client, "GET", "/v1/analyses", credential=rolled.key)
    report_leaked_keys(candidates=[creds["pub"].token, "ss_secret_nope"])
    keys = [c.token for w, c in creds.items() if w != "owner"] + [rolled.key]
    needles = keys + [part for k in keys for part in _hidden_parts(k)]
    needles.append(creds["owner"].token)
    cells = _database_text()
    assert len(cells) > 100  # the scan saw the data
    assert any(
        api_key.digest in text for api_key in ApiKey.objects.all() for _, text in cells
    )  # digests are there, so the scan reads the key table
    leaks = [(table, needle[:12]) for table, text in cells for needle in needles if needle in text]
    assert leaks == []
