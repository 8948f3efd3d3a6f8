"""Guardrails on the request path (SPEC §4.10): IP allowlist, project list, rate limit, and
their order; and the usage counts they leave (SPEC §4.9). The management side (mint,
PATCH, policy) is tested with its API."""

from __future__ import annotations

import pytest
from django.test import override_settings
from django.utils import timezone

from apps.apikeys.gate.batch import send_pending_counts
from apps.apikeys.gate.store import local_store
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey, KeyUsage
from apps.apikeys.services import revoke_key
from apps.apikeys.usage.answer import key_usage
from apps.apikeys.usage.flush import flush_usage
from core.sharedredis import redis_client
from tests.conftest import bearer
from tests.factories import make_key

pytestmark = pytest.mark.django_db


def limited(api_key: ApiKey, **fields) -> ApiKey:
    ApiKey.objects.filter(pk=api_key.pk).update(**fields)
    api_key.refresh_from_db()
    return api_key


def code(response) -> str | None:
    return response.json().get("error", {}).get("code") if response.content else None


def totals(api_key: ApiKey) -> tuple[int, int]:
    total = key_usage(api_key, "hour")["total"]
    return total["requests"], total["refused"]


@override_settings(NUM_PROXIES=1)
@pytest.mark.parametrize(
    ("client_ip", "allowed"),
    [
        ("203.0.113.9", True),
        ("203.0.114.9", False),
        ("2001:db8::5", True),
        ("2001:db9::5", False),
    ],
)
def test_ip_allowlist_admits_addresses_inside_its_networks_only(
    api_client, project, client_ip, allowed
):
    api_key, key = make_key(KeyKind.SECRET, project=project)
    limited(api_key, allowed_ips=["203.0.113.0/24", "2001:db8::/32"])

    response = api_client.get("/v1/me", HTTP_X_FORWARDED_FOR=client_ip, **bearer(key))

    assert response.status_code == (200 if allowed else 403)
    assert allowed or code(response) == "IP_NOT_ALLOWED"


@override_settings(NUM_PROXIES=1)
def test_a_spoofed_address_left_of_the_trusted_proxy_does_not_pass_the_allowlist(
    api_client, project
):
    api_key, key = make_key(KeyKind.SECRET, project=project)
    limited(api_key, allowed_ips=["203.0.113.0/24"])

    response = api_client.get(
        "/v1/me", HTTP_X_FORWARDED_FOR="203.0.113.9, 198.51.100.1", **bearer(key)
    )

    assert code(response) == "IP_NOT_ALLOWED"


def test_a_revoked_key_is_refused_as_revoked_before_its_ip_is_checked(api_client, project):
    api_key, key = make_key(KeyKind.SECRET, project=project)
    limited(api_key, allowed_ips=["10.9.9.0/24"])
    revoke_key(actor=None, api_key=api_key)

    assert code(api_client.get("/v1/me", **bearer(key))) == "KEY_REVOKED"


def test_an_org_key_confined_to_projects_is_refused_elsewhere(api_client, project, other_project):
    api_key, key = make_key(KeyKind.ORGANIZATION, organization=project.organization)
    limited(api_key, project_ids=[str(project.id)])

    inside = api_client.get("/v1/analyses", HTTP_X_PROJECT_ID=str(project.id), **bearer(key))
    outside = api_client.get("/v1/analyses", HTTP_X_PROJECT_ID=str(other_project.id), **bearer(key))

    assert inside.status_code == 200
    assert (outside.status_code, code(outside)) == (403, "PROJECT_MISMATCH")
    limited(api_key, project_ids=[])  # widened: every project, on the next request
    again = api_client.get("/v1/analyses", HTTP_X_PROJECT_ID=str(other_project.id), **bearer(key))
    assert again.status_code == 200


def test_rate_limit_admits_n_per_window_with_headers_then_429(api_client, project):
    api_key, key = make_key(KeyKind.SECRET, project=project)
    limited(api_key, rate_limit_requests=3, rate_limit_seconds=60)

    responses = [api_client.get("/v1/analyses", **bearer(key)) for _ in range(5)]

    assert [r.status_code for r in responses] == [200, 200, 200, 429, 429]
    assert [r["X-RateLimit-Remaining"] for r in responses] == ["2", "1", "0", "0", "0"]
    assert {r["X-RateLimit-Limit"] for r in responses} == {"3"}
    reset = int(responses[0]["X-RateLimit-Reset"])
    assert timezone.now().timestamp() < reset <= timezone.now().timestamp() + 61
    assert code(responses[3]) == "RATE_LIMITED"
    assert 1 <= int(responses[3]["Retry-After"]) <= 60
    assert totals(api_key) == (5, 2)


def test_a_request_refused_before_the_rate_limit_consumes_no_budget(
    api_client, project, other_project
):
    api_key, key = make_key(KeyKind.ORGANIZATION, organization=project.organization)
    limited(api_key, rate_limit_requests=2, rate_limit_seconds=60, project_ids=[str(project.id)])
    for _ in range(3):
        refused = api_client.get(
            "/v1/analyses", HTTP_X_PROJECT_ID=str(other_project.id), **bearer(key)
        )
        assert code(refused) == "PROJECT_MISMATCH"
        # Every answer to a rate-limited key carries the headers; this one used no budget.
        assert (refused["X-RateLimit-Limit"], refused["X-RateLimit-Remaining"]) == ("2", "2")

    ok = [
        api_client.get("/v1/analyses", HTTP_X_PROJECT_ID=str(project.id), **bearer(key))
        for _ in range(2)
    ]

    assert [r.status_code for r in ok] == [200, 200]
    assert totals(api_key) == (5, 3)


def test_a_permission_refusal_comes_after_the_rate_limit_and_counts_as_refused(api_client, project):
    api_key, key = make_key(KeyKind.SECRET, project=project, permissions=["config:read"])
    limited(api_key, rate_limit_requests=10, rate_limit_seconds=60)

    response = api_client.get("/v1/analyses", **bearer(key))

    assert code(response) == "PERMISSION_DENIED"
    assert response["X-RateLimit-Remaining"] == "9"
    assert totals(api_key) == (1, 1)


def test_keys_without_a_limit_carry_no_rate_limit_headers(api_client, project):
    _api_key, key = make_key(KeyKind.SECRET, project=project)
    response = api_client.get("/v1/analyses", **bearer(key))
    assert response.status_code == 200
    assert "X-RateLimit-Limit" not in response


def test_usage_counts_accepted_and_refused_requests_and_their_ips(api_client, project):
    api_key, key = make_key(KeyKind.SECRET, project=project, permissions=["analysis:read"])
    for _ in range(4):
        api_client.get("/v1/analyses", **bearer(key))
    api_client.get("/v1/config", **bearer(key))  # PERMISSION_DENIED
    api_client.get("/v1/analyses", **bearer(key[:-1] + ("A" if key[-1] != "A" else "B")))

    usage = key_usage(api_key, "hour")

    assert usage["total"] == {"requests": 5, "refused": 1}
    assert len(usage["series"]) == 48
    assert usage["series"][-1]["requests"] == 5
    assert [s["start"] for s in usage["series"]] == sorted(s["start"] for s in usage["series"])
    assert [(ip["ip"], ip["requests"]) for ip in usage["recentIps"]] == [("127.0.0.1", 5)]
    assert len(key_usage(api_key, "day")["series"]) == 90


def test_copying_counts_to_the_database_changes_no_answer_and_repeats_harmlessly(
    api_client, project
):
    api_key, key = make_key(KeyKind.SECRET, project=project)
    for _ in range(3):
        api_client.get("/v1/analyses", **bearer(key))
    before = key_usage(api_key, "hour")

    flush_usage()
    flush_usage()

    assert key_usage(api_key, "hour") == before
    rows = KeyUsage.objects.filter(key=api_key)
    assert sorted(rows.values_list("granularity", "requests")) == [("day", 3), ("hour", 3)]


def test_lost_counters_leave_the_copied_counts(api_client, project):
    """A Redis restart (or a new process without Redis) starts a new epoch: copied counts stay."""
    api_key, key = make_key(KeyKind.SECRET, project=project)
    for _ in range(2):
        api_client.get("/v1/analyses", **bearer(key))
    flush_usage()
    client = redis_client()
    if client is not None:
        client.delete("ss:u:epoch")
    else:
        local_store.cache_clear()  # a new process: its own counters, its own epoch
    api_client.get("/v1/analyses", **bearer(key))

    assert totals(api_key) == (3, 0)


def test_batched_counts_reach_the_shared_store_in_one_send(api_client, project, settings):
    """With Redis, a process sends its counts in batches (USAGE_BATCH_SECONDS): nothing is
    counted twice or lost, and a rate-limited key is still checked in its request."""
    if redis_client() is None:
        pytest.skip("batches go to Redis; without REDIS_URL counting is in process memory")
    settings.USAGE_BATCH_SECONDS = 3600  # the background send never runs during the test
    api_key, key = make_key(KeyKind.SECRET, project=project, permissions=["analysis:read"])
    for _ in range(3):
        api_client.get("/v1/analyses", **bearer(key))
    api_client.get("/v1/config", **bearer(key))  # PERMISSION_DENIED
    assert totals(api_key) == (0, 0)  # still in this process's batch

    send_pending_counts()
    send_pending_counts()  # nothing left: sending again adds nothing

    usage = key_usage(api_key, "hour")
    assert usage["total"] == {"requests": 4, "refused": 1}
    assert [(ip["ip"], ip["requests"]) for ip in usage["recentIps"]] == [("127.0.0.1", 4)]


def test_a_copy_forgets_the_counters_it_copied_and_keeps_the_ones_that_moved(api_client, project):
    client = redis_client()
    if client is None:
        pytest.skip("the pending-copy markers are Redis's; process memory has its own")
    api_key, key = make_key(KeyKind.SECRET, project=project)

    def markers() -> set[str]:
        return {m.decode() for m in client.smembers("ss:u:dirty") if str(api_key.id) in m.decode()}

    api_client.get("/v1/analyses", **bearer(key))
    assert {m.split("|")[2] for m in markers()} == {"hour", "day", "ip"}
    flush_usage()
    assert markers() == set()  # copied and unchanged: nothing left to copy
    api_client.get("/v1/analyses", **bearer(key))
    assert len(markers()) == 3
    flush_usage()
    assert totals(api_key) == (2, 0)
