"""The overlapped rate-limit check (apps.apikeys.gate.reservation): a rate-limited key's
check is sent to Redis before the key's lookup, for the key and limit this process saw last
with the same credential, and read after it. The guess decides nothing: it is held against
the row, a changed limit is checked again, and a request that never reaches the limit's step
gives back what the check took (SPEC §4.10: no budget used before the limit's step).

The behaviour of limits as clients see it is in test_guardrails_enforcement (in process)
and test_guardrails_servers (two gunicorn servers)."""

from __future__ import annotations

import time
import uuid

import pytest
from django.db import OperationalError, connection

from apps.apikeys.gate import reservation, window
from apps.apikeys.gate.batch import send_pending_counts
from apps.apikeys.keyformat import KeyKind, digest
from apps.apikeys.services import revoke_key, update_key
from apps.orgs import access
from core import failopen
from core.sharedredis import redis_client
from tests.apikeys.usage_helpers import requires_redis
from tests.factories import ProjectFactory, make_key
from tests.orgs.helpers import bearer_client, error_code

pytestmark = [pytest.mark.django_db, requires_redis]

ALLOWED = ["203.0.113.0/24"]
INSIDE, OUTSIDE = "203.0.113.9", "198.51.100.7"


def analyses(credential, project, ip=INSIDE):
    client = bearer_client(credential)
    return client.get("/v1/analyses", HTTP_X_PROJECT_ID=str(project.id), REMOTE_ADDR=ip)


def window_length(api_key) -> int:
    """How many admitted requests the key's window holds in Redis."""
    return redis_client().llen(f"ss:rlog:{api_key.id}")


def limited_key(project, requests=10, *, confined=False, **kwargs):
    """A secret key with a limit of `requests` a minute; `confined`: an org key confined to
    `project`, so a request for another project is refused before the limit's step."""
    if confined:
        kwargs.update(kind=KeyKind.ORGANIZATION, project_ids=[str(project.id)])
    return make_key(
        kwargs.pop("kind", KeyKind.SECRET),
        project=project,
        rate_limit={"requests": requests, "perSeconds": 60},
        **kwargs,
    )


def org_key(project, requests=10):
    """An organization key with a limit of `requests` a minute, for every project of its
    organization: one it names elsewhere is refused only once a query has read it."""
    return limited_key(project, requests, kind=KeyKind.ORGANIZATION)


class DuringLookup:
    """A database execute wrapper that runs `then` when the key's lookup is executed."""

    def __init__(self, plaintext: str, then) -> None:
        self.digest, self.then = digest(plaintext), then

    def __call__(self, execute, sql, params, many, context):
        if params and list(params) == [self.digest]:
            self.then()
        return execute(sql, params, many, context)


def test_the_check_reaches_redis_while_the_key_is_looked_up(project):
    api_key, plaintext = limited_key(project)
    assert analyses(plaintext, project).status_code == 200  # this process learns the limit
    seen = []

    def wait_for_the_check():
        deadline = time.monotonic() + 2
        while window_length(api_key) < 2 and time.monotonic() < deadline:
            time.sleep(0.001)
        seen.append(window_length(api_key))

    with connection.execute_wrapper(DuringLookup(plaintext, wait_for_the_check)):
        second = analyses(plaintext, project)

    assert seen == [2]  # the second request was in the window before its lookup ran
    assert second.status_code == 200
    assert second["X-RateLimit-Remaining"] == "8"


def deleted_since_seen(plaintext, other_project):
    """A project of the org key's organization this process read for the key (one request),
    deleted since: the guess cannot tell, only the row does (a reservation is taken and
    given back)."""
    assert analyses(plaintext, other_project).status_code == 200
    project_id = other_project.id
    other_project.delete()
    other_project.id = project_id  # delete() clears it; requests still name it
    return other_project


def test_a_request_refused_before_the_limit_gives_back_what_its_check_took(project, other_project):
    api_key, plaintext = org_key(project, requests=3)
    assert analyses(plaintext, project).status_code == 200
    gone = deleted_since_seen(plaintext, other_project)

    refused = [analyses(plaintext, gone) for _ in range(4)]

    assert {(r.status_code, error_code(r), r["X-RateLimit-Remaining"]) for r in refused} == {
        (404, "PROJECT_NOT_FOUND", "1")
    }
    assert all(r.wsgi_request.META[reservation.RESERVATION].taken_ms for r in refused)
    assert window_length(api_key) == 2
    assert [analyses(plaintext, project).status_code for _ in range(2)] == [200, 429]


def test_an_org_key_naming_foreign_projects_never_holds_its_budget(project):
    """Found by an audit: 300 requests of a 20-an-hour org key naming another organization's
    project, mixed with its 20 valid ones, got one of those a 429 in about half the runs:
    each refused request held a place in the window from before its lookup to its response.
    A project this process has not seen in the key's organization reserves nothing."""
    api_key, plaintext = org_key(project, requests=3)
    assert analyses(plaintext, project).status_code == 200
    elsewhere = ProjectFactory()  # another organization's: only its row tells
    seen = []

    def look_at_the_window():
        time.sleep(0.05)  # long enough for a check sent before the lookup to land
        seen.append(window_length(api_key))

    with connection.execute_wrapper(DuringLookup(plaintext, look_at_the_window)):
        refused = analyses(plaintext, elsewhere)

    assert error_code(refused) == "PROJECT_NOT_FOUND"
    assert reservation.RESERVATION not in refused.wsgi_request.META
    assert seen == [1]
    assert refused["X-RateLimit-Remaining"] == "2"


def test_an_org_keys_check_goes_ahead_once_the_process_has_seen_the_project(project, other_project):
    _api_key, plaintext = org_key(project, requests=5)
    assert analyses(plaintext, project).status_code == 200

    first, second = analyses(plaintext, other_project), analyses(plaintext, other_project)

    assert [first.status_code, second.status_code] == [200, 200]
    assert reservation.RESERVATION not in first.wsgi_request.META  # checked after the lookup
    assert second.wsgi_request.META[reservation.RESERVATION].taken_ms  # ahead of it
    assert [first["X-RateLimit-Remaining"], second["X-RateLimit-Remaining"]] == ["3", "2"]


def test_a_key_revoked_since_the_guess_uses_no_budget(owner, project):
    api_key, plaintext = limited_key(project, requests=3)
    assert analyses(plaintext, project).status_code == 200
    revoke_key(actor=owner, api_key=api_key)

    revoked = [analyses(plaintext, project) for _ in range(2)]

    assert [error_code(r) for r in revoked] == ["KEY_REVOKED"] * 2
    assert window_length(api_key) == 1


def test_a_limit_lowered_since_the_guess_is_checked_with_the_new_limit(owner, project):
    api_key, plaintext = limited_key(project, requests=100)
    assert analyses(plaintext, project).status_code == 200
    update_key(
        actor=owner, api_key=api_key, changes={"rateLimit": {"requests": 2, "perSeconds": 60}}
    )

    after = [analyses(plaintext, project) for _ in range(3)]

    # The guess (100 a minute) took a place; checking again with 2 gave it back first.
    assert [r.status_code for r in after] == [200, 429, 429]
    assert after[0]["X-RateLimit-Limit"] == "2"
    assert after[0]["X-RateLimit-Remaining"] == "0"
    assert window_length(api_key) == 2


def test_a_limit_lifted_since_the_guess_gives_back_its_place(owner, project):
    api_key, plaintext = limited_key(project)
    assert analyses(plaintext, project).status_code == 200
    update_key(actor=owner, api_key=api_key, changes={"rateLimit": None})

    lifted = analyses(plaintext, project)

    assert lifted.status_code == 200
    assert "X-RateLimit-Limit" not in lifted
    assert window_length(api_key) == 1


def test_a_failed_lookup_answers_503_gives_back_and_leaves_the_connection_clean(project):
    api_key, plaintext = limited_key(project, requests=3)
    assert analyses(plaintext, project).status_code == 200

    def outage():
        raise OperationalError("connection refused")

    with connection.execute_wrapper(DuringLookup(plaintext, outage)):
        failed = analyses(plaintext, project)

    assert (failed.status_code, error_code(failed)) == (503, "SERVICE_UNAVAILABLE")
    assert window_length(api_key) == 1
    # Redis's answer to the check was read: the pooled connection answers what it is asked.
    client = redis_client()
    assert [client.echo(f"probe {i}") for i in range(5)] == [
        f"probe {i}".encode() for i in range(5)
    ]
    assert [analyses(plaintext, project)["X-RateLimit-Remaining"] for _ in range(2)] == ["1", "0"]


def test_a_redis_without_the_script_still_counts_the_request_once(project, monkeypatch):
    api_key, plaintext = limited_key(project, requests=3)
    assert analyses(plaintext, project).status_code == 200
    # A script Redis has never seen (as after a restart), without flushing the server's
    # scripts under other tests: the same script with a comment of its own.
    unseen = redis_client().register_script(f"{window._LIMIT_SCRIPT}-- {uuid.uuid4()}\n")
    monkeypatch.setattr(window, "limit_script", lambda client: unseen)

    second = analyses(plaintext, project)

    assert second.wsgi_request.META[reservation.RESERVATION].state is None  # NOSCRIPT
    assert second.status_code == 200
    assert second["X-RateLimit-Remaining"] == "1"
    assert window_length(api_key) == 2


def test_a_stale_guess_never_drops_times_a_longer_window_still_counts(owner, project):
    """Another process already checks the key's new, longer window; this one still guesses
    the old, shorter one: its check must not trim the times only the longer one counts."""
    api_key, plaintext = limited_key(project, requests=3)  # 3 a minute, guessed from here on
    assert analyses(plaintext, project).status_code == 200
    update_key(
        actor=owner, api_key=api_key, changes={"rateLimit": {"requests": 3, "perSeconds": 3600}}
    )
    window.check_limit(str(api_key.id), (3, 3600), peek=True)  # the other process's check
    two_minutes_ago = int(time.time() * 1000) - 120_000
    redis_client().lpush(f"ss:rlog:{api_key.id}", two_minutes_ago, two_minutes_ago)

    third_in_the_hour = analyses(plaintext, project)

    assert (third_in_the_hour.status_code, error_code(third_in_the_hour)) == (429, "RATE_LIMITED")
    assert window_length(api_key) == 3


def test_a_give_back_after_redis_failed_the_request_goes_with_the_next_batch(
    project, other_project
):
    api_key, plaintext = org_key(project, requests=3)
    assert analyses(plaintext, project).status_code == 200
    gone = deleted_since_seen(plaintext, other_project)

    def redis_gave_up():  # as a 250 ms timeout at another Redis step of the request does
        failopen.gave_up("test")

    try:
        with connection.execute_wrapper(DuringLookup(plaintext, redis_gave_up)):
            refused = analyses(plaintext, gone)
    finally:
        failopen.new_request()

    assert error_code(refused) == "PROJECT_NOT_FOUND"
    assert refused.wsgi_request.META[reservation.RESERVATION].taken_ms
    send_pending_counts()
    assert window_length(api_key) == 2


def count_checks(monkeypatch) -> list:
    """The window checks made after the lookup (each one round trip), from now on."""
    checks, check_limit = [], window.check_limit

    def counted(*args, **kwargs):
        checks.append(args)
        return check_limit(*args, **kwargs)

    monkeypatch.setattr(window, "check_limit", counted)
    return checks


def test_an_exhausted_window_answers_a_refusal_before_the_limit_without_a_second_check(
    project, other_project, monkeypatch
):
    api_key, plaintext = org_key(project, requests=2)
    assert analyses(plaintext, project).status_code == 200
    gone = deleted_since_seen(plaintext, other_project)
    checks = count_checks(monkeypatch)

    refused = analyses(plaintext, gone)

    assert error_code(refused) == "PROJECT_NOT_FOUND"
    assert refused["X-RateLimit-Remaining"] == "0"
    assert checks == []  # the overlapped check took nothing and told the window
    assert window_length(api_key) == 2


def test_the_guesses_a_process_keeps_are_bounded(project, monkeypatch):
    monkeypatch.setattr(reservation, "LIMITS_SEEN_KEPT", 3)
    monkeypatch.setattr(reservation, "_limits_seen", {})
    keys = [limited_key(project) for _ in range(5)]

    for _api_key, plaintext in keys:
        assert analyses(plaintext, project).status_code == 200

    assert list(reservation._limits_seen) == [digest(plaintext) for _k, plaintext in keys[2:]]


def test_the_projects_a_process_remembers_for_org_keys_are_bounded(organization, monkeypatch):
    monkeypatch.setattr(access, "PROJECT_ORGS_KEPT", 3)
    monkeypatch.setattr(access, "_project_orgs", {})
    projects = [ProjectFactory(organization=organization) for _ in range(5)]
    _api_key, plaintext = org_key(projects[0])

    for project in projects:
        assert analyses(plaintext, project).status_code == 200

    assert list(access._project_orgs) == [p.id for p in projects[2:]]


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
def test_a_client_its_guardrails_refuse_never_holds_the_keys_budget(project, guardrail, headers):
    """A stolen key used from outside its allowlist cannot keep the budget of its owner
    busy with checks in flight: nothing is reserved for such a request."""
    kind = KeyKind.PUBLIC if "allowed_origins" in guardrail else KeyKind.SECRET
    api_key, plaintext = make_key(
        kind, project=project, rate_limit={"requests": 3, "perSeconds": 60}, **guardrail
    )
    allowed = {"REMOTE_ADDR": INSIDE, "HTTP_ORIGIN": "https://app.example.com"}
    client = bearer_client(plaintext)
    url, project_header = "/v1/analyses", {"HTTP_X_PROJECT_ID": str(project.id)}
    assert client.get(url, **project_header, **allowed).status_code == 200
    seen = []

    def look_at_the_window():
        time.sleep(0.05)  # long enough for a check sent before the lookup to land
        seen.append(window_length(api_key))

    with connection.execute_wrapper(DuringLookup(plaintext, look_at_the_window)):
        refused = client.get(url, **project_header, **{**allowed, **headers})

    assert refused.status_code == 403
    assert refused.wsgi_request.META.get(reservation.RESERVATION) is None
    assert seen == [1]
    assert refused["X-RateLimit-Remaining"] == "2"
    allowed_again = client.get(url, **project_header, **allowed)
    assert allowed_again.wsgi_request.META.get(reservation.RESERVATION) is not None


@pytest.mark.parametrize(
    ("request_for", "code"),
    [
        ("confined org key, another project", "PROJECT_MISMATCH"),
        ("project key, another project", "PROJECT_MISMATCH"),
        ("org key, no project", "PROJECT_ID_REQUIRED"),
        ("org key, malformed project", "PROJECT_ID_INVALID"),
        ("key management", "KEY_MANAGEMENT_FORBIDDEN"),
    ],
)
def test_a_refusal_the_guess_foresees_reserves_nothing_and_reads_the_window_once(
    project, other_project, monkeypatch, request_for, code
):
    """SPEC §4.10's order puts the project and a view's refusal of keys before the limit:
    the guess tells them apart before the lookup, so one round trip answers the window for
    the X-RateLimit-* headers and nothing is reserved or given back."""
    if request_for.startswith("confined"):
        api_key, plaintext = limited_key(project, requests=3, confined=True)
    elif request_for.startswith("org"):
        api_key, plaintext = org_key(project, requests=3)
    else:
        api_key, plaintext = limited_key(project, requests=3)
    assert analyses(plaintext, project).status_code == 200  # the guess is this key's
    client = bearer_client(plaintext)
    header = {
        "confined org key, another project": str(other_project.id),
        "project key, another project": str(other_project.id),
        "org key, malformed project": "not-a-uuid",
    }.get(request_for)
    project_header = {} if header is None else {"HTTP_X_PROJECT_ID": header}
    url = (
        f"/v1/projects/{project.id}/api-keys"
        if request_for == "key management"
        else ("/v1/analyses")
    )
    checks = count_checks(monkeypatch)

    refused = client.get(url, REMOTE_ADDR=INSIDE, **project_header)

    assert error_code(refused) == code
    assert reservation.RESERVATION not in refused.wsgi_request.META
    assert len(checks) == 1  # the window read for the headers: one round trip in all
    assert refused["X-RateLimit-Remaining"] == "2"
    assert window_length(api_key) == 1
