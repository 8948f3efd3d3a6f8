"""A key's rate limit is checked at its step of SPEC §4.10's order, with the limit the
key's row says (read by the request's own lookup), in one Redis round trip after the
lookup: a refusal before that step uses no budget, and a changed limit applies to the
next request.

The behaviour of limits as clients see it is also in test_guardrails_enforcement (in
process) and test_guardrails_servers (two gunicorn servers)."""

from __future__ import annotations

import uuid

import pytest
from django.db import OperationalError, connection

from apps.apikeys.gate import window
from apps.apikeys.keyformat import KeyKind, digest
from apps.apikeys.services import update_key
from core.sharedredis import redis_client
from tests.apikeys.usage_helpers import requires_redis
from tests.factories import ProjectFactory, make_key
from tests.orgs.helpers import bearer_client, error_code

pytestmark = [pytest.mark.django_db, requires_redis]

ALLOWED = ["203.0.113.0/24"]
INSIDE, OUTSIDE = "203.0.113.9", "198.51.100.7"


def analyses(credential, project, ip=INSIDE, **headers):
    client = bearer_client(credential)
    headers = {"REMOTE_ADDR": ip, **headers}
    return client.get("/v1/analyses", HTTP_X_PROJECT_ID=str(project.id), **headers)


def window_length(api_key) -> int:
    """How many admitted requests the key's window holds in Redis."""
    return redis_client().llen(f"ss:rlog:{api_key.id}")


def limited_key(project, requests=10, kind=KeyKind.SECRET, **kwargs):
    """A key of `kind` with a limit of `requests` a minute."""
    return make_key(
        kind, project=project, rate_limit={"requests": requests, "perSeconds": 60}, **kwargs
    )


def count_checks(monkeypatch) -> list:
    """The window checks made at the limit's step or after the response (each one round
    trip), from now on."""
    checks, check_limit = [], window.check_limit

    def counted(*args, **kwargs):
        checks.append(args)
        return check_limit(*args, **kwargs)

    monkeypatch.setattr(window, "check_limit", counted)
    return checks


def test_a_lowered_limit_applies_to_the_next_request(owner, project):
    api_key, plaintext = limited_key(project, requests=100)
    assert analyses(plaintext, project).status_code == 200
    update_key(
        actor=owner, api_key=api_key, changes={"rateLimit": {"requests": 2, "perSeconds": 60}}
    )

    after = [analyses(plaintext, project) for _ in range(3)]

    assert [r.status_code for r in after] == [200, 429, 429]
    assert [r["X-RateLimit-Limit"] for r in after] == ["2"] * 3
    assert after[0]["X-RateLimit-Remaining"] == "0"
    assert window_length(api_key) == 2


def test_a_failed_lookup_answers_503_and_uses_no_budget(project):
    """A guard: nothing of the limit may happen before the key's row is read."""
    api_key, plaintext = limited_key(project, requests=3)
    assert analyses(plaintext, project).status_code == 200
    key_digest = digest(plaintext)

    def outage(execute, sql, params, many, context):
        if params and list(params) == [key_digest]:
            raise OperationalError("connection refused")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(outage):
        failed = analyses(plaintext, project)

    assert (failed.status_code, error_code(failed)) == (503, "SERVICE_UNAVAILABLE")
    assert window_length(api_key) == 1
    assert [analyses(plaintext, project)["X-RateLimit-Remaining"] for _ in range(2)] == ["1", "0"]


def test_a_redis_without_the_script_still_counts_the_request_once(project, monkeypatch):
    """redis-py's Script loads a script Redis has lost (a restart) and runs it again."""
    api_key, plaintext = limited_key(project, requests=3)
    assert analyses(plaintext, project).status_code == 200
    # A script Redis has never seen, without flushing the server's scripts under other
    # tests: the same script with a comment of its own.
    unseen = redis_client().register_script(f"{window._LIMIT_SCRIPT}-- {uuid.uuid4()}\n")
    monkeypatch.setattr(window, "limit_script", lambda client: unseen)

    second = analyses(plaintext, project)

    assert second.status_code == 200
    assert second["X-RateLimit-Remaining"] == "1"
    assert window_length(api_key) == 2


@pytest.mark.parametrize(
    ("request_for", "code"),
    [
        ("confined org key, another project", "PROJECT_MISMATCH"),
        ("project key, another project", "PROJECT_MISMATCH"),
        ("org key, another organization's project", "PROJECT_NOT_FOUND"),
        ("org key, no project", "PROJECT_ID_REQUIRED"),
        ("org key, malformed project", "PROJECT_ID_INVALID"),
        ("key management", "KEY_MANAGEMENT_FORBIDDEN"),
    ],
)
def test_a_refusal_before_the_limit_reads_the_window_once_and_uses_none(
    project, other_project, monkeypatch, request_for, code
):
    """SPEC §4.10's order puts the project and a view's refusal of keys before the limit:
    such a request uses no budget, and one window check reads the window for its
    X-RateLimit-* headers."""
    if request_for.startswith("confined"):
        kind, kwargs = KeyKind.ORGANIZATION, {"project_ids": [str(project.id)]}
    elif request_for.startswith("org"):
        kind, kwargs = KeyKind.ORGANIZATION, {}
    else:
        kind, kwargs = KeyKind.SECRET, {}
    api_key, plaintext = limited_key(project, requests=3, kind=kind, **kwargs)
    assert analyses(plaintext, project).status_code == 200
    header = {
        "confined org key, another project": str(other_project.id),
        "project key, another project": str(other_project.id),
        "org key, another organization's project": str(ProjectFactory().id),
        "org key, malformed project": "not-a-uuid",
    }.get(request_for)
    project_header = {} if header is None else {"HTTP_X_PROJECT_ID": header}
    url = (
        f"/v1/projects/{project.id}/api-keys"
        if request_for == "key management"
        else ("/v1/analyses")
    )
    checks = count_checks(monkeypatch)

    refused = bearer_client(plaintext).get(url, REMOTE_ADDR=INSIDE, **project_header)

    assert error_code(refused) == code
    assert len(checks) == 1  # the window read once, for the headers
    assert refused["X-RateLimit-Remaining"] == "2"
    assert window_length(api_key) == 1


@pytest.mark.parametrize(
    ("guardrail", "headers"),
    [
        ({"allowed_ips": ALLOWED}, {"REMOTE_ADDR": OUTSIDE}),
        (
            {"allowed_origins": ["https://app.example.com"]},
            {"HTTP_ORIGIN": "https://evil.example.net"},
        ),
    ],
    ids=["ip", "origin"],
)
def test_a_client_its_guardrails_refuse_never_uses_the_keys_budget(project, guardrail, headers):
    """A stolen key used from outside its allowlist cannot spend its owner's budget."""
    kind = KeyKind.PUBLIC if "allowed_origins" in guardrail else KeyKind.SECRET
    api_key, plaintext = limited_key(project, requests=3, kind=kind, **guardrail)
    allowed = {"REMOTE_ADDR": INSIDE, "HTTP_ORIGIN": "https://app.example.com"}
    assert analyses(plaintext, project, **allowed).status_code == 200

    refused = [analyses(plaintext, project, **{**allowed, **headers}) for _ in range(5)]

    assert {r.status_code for r in refused} == {403}
    assert {r["X-RateLimit-Remaining"] for r in refused} == {"2"}
    assert window_length(api_key) == 1
    assert analyses(plaintext, project, **allowed)["X-RateLimit-Remaining"] == "1"
