"""Key usage over HTTP against real gunicorn servers (SPEC §4.9).

Two single-worker servers are two processes with their own memory, sharing one
PostgreSQL and one Redis: counts must be exact across them and current within
2 seconds. Both trust one proxy (NUM_PROXIES=1), so X-Forwarded-For presents
the client IPs; its entries further left are the client's own claim.
"""

from __future__ import annotations

import time

import pytest
from django.conf import settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from apps.accounts import services as account_services
from apps.apikeys import keyformat
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import KeyUsage
from apps.apikeys.services import revoke_key
from core.sharedredis import redis_client
from tests.apikeys.usage_helpers import requires_postgres_and_redis, set_rate_limit
from tests.factories import make_key
from tests.reliability.helpers import bearer, call, closed_port
from tests.servers import GunicornServer

pytestmark = pytest.mark.slow

ANALYSIS = {"title": "Checkout errors", "input": "ERROR payment declined"}
AGENT = "sigsentry-ci/2.1 (+https://ci.example.com) <b>bold</b>"
FRESH_WITHIN = 2.0


@pytest.fixture(scope="module")
def two_servers(django_db_blocker):
    # Counts go to Redis in per-process batches, as in production (USAGE_BATCH_SECONDS).
    env = {"REDIS_URL": settings.REDIS_URL, "NUM_PROXIES": "1", "USAGE_BATCH_SECONDS": "1"}
    with django_db_blocker.unblock():
        servers = [GunicornServer(env=env, workers=1), GunicornServer(env=env, workers=1)]
    try:
        yield [server.start() for server in servers]
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def servers(two_servers, transactional_db):
    return two_servers


def as_client(ip: str, **extra) -> dict[str, str]:
    """Headers of a request from `ip` through the one trusted proxy, which appends it."""
    return {"X-Forwarded-For": f"6.6.6.6, {ip}", **extra}


def usage_path(project, api_key, granularity: str = "hour") -> str:
    return f"/v1/projects/{project.id}/api-keys/{api_key.id}/usage?granularity={granularity}"


def wait_for_usage(urls, path: str, access: str, total: dict, since: float) -> dict:
    """The first usage answer (from any server, in turn) whose total is `total`; it must
    come within FRESH_WITHIN seconds of `since`."""
    body = None
    attempt = 0
    while True:
        reply = call(urls[attempt % len(urls)], "GET", path, headers=bearer(access))
        assert reply.status == 200, reply.body
        body = reply.json
        if body["total"] == total:
            return body
        if time.monotonic() - since > FRESH_WITHIN:
            raise AssertionError(f"after {FRESH_WITHIN} s the total is {body['total']}")
        attempt += 1
        time.sleep(0.05)


@requires_postgres_and_redis
def test_two_servers_count_exactly_and_at_once(servers, project, owner):
    a, b = servers
    api_key, plaintext = make_key(KeyKind.SECRET, project=project, permissions=["analysis:read"])
    access = account_services.start_session(owner).access
    key_headers = bearer(plaintext)

    statuses = [
        call(
            a.url,
            "GET",
            "/v1/me",
            headers=key_headers | as_client("198.51.100.7", **{"User-Agent": AGENT}),
        ).status
        for _ in range(7)
    ]
    statuses += [
        call(
            a.url,
            "POST",
            "/v1/analyses",
            headers=key_headers | as_client("198.51.100.7"),
            body=ANALYSIS,
        ).status
        for _ in range(3)
    ]
    statuses += [
        call(b.url, "GET", "/v1/me", headers=key_headers | as_client("203.0.113.9")).status
        for _ in range(5)
    ]
    sent_at = time.monotonic()
    assert statuses == [200] * 7 + [403] * 3 + [200] * 5

    total = {"requests": 15, "refused": 3}
    hourly = wait_for_usage([b.url, a.url], usage_path(project, api_key), access, total, sent_at)
    daily = call(a.url, "GET", usage_path(project, api_key, "day"), headers=bearer(access)).json

    assert daily["total"] == total
    assert 48 <= len(hourly["series"]) <= 49
    assert 90 <= len(daily["series"]) <= 91
    for body in (hourly, daily):
        starts = [bucket["start"] for bucket in body["series"]]
        assert starts == sorted(starts), "oldest first"
        assert all(start.endswith("Z") for start in starts)
    assert {ip["ip"]: ip["requests"] for ip in hourly["recentIps"]} == {
        "198.51.100.7": 10,
        "203.0.113.9": 5,
    }, "the spoofed 6.6.6.6 is never recorded"
    assert [ip["ip"] for ip in hourly["recentIps"]] == ["203.0.113.9", "198.51.100.7"]

    key = call(
        b.url, "GET", f"/v1/projects/{project.id}/api-keys/{api_key.id}", headers=bearer(access)
    ).json
    assert key["lastUsedIp"] == "198.51.100.7"
    assert key["lastUsedUserAgent"] == AGENT
    assert key["lastUsedAt"] is not None


@requires_postgres_and_redis
def test_the_usage_endpoint_refuses_keys_outsiders_and_bad_parameters_over_http(
    servers, project, owner, outsider
):
    a, _b = servers
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)
    member = account_services.start_session(owner).access
    stranger = account_services.start_session(outsider).access

    by_key = call(a.url, "GET", usage_path(project, api_key), headers=bearer(plaintext))
    by_outsider = call(a.url, "GET", usage_path(project, api_key), headers=bearer(stranger))
    bad = call(a.url, "GET", usage_path(project, api_key, "week"), headers=bearer(member))

    assert (by_key.status, by_key.code) == (403, "KEY_MANAGEMENT_FORBIDDEN")
    assert (by_outsider.status, by_outsider.code) == (404, "PROJECT_NOT_FOUND")
    assert (bad.status, bad.code) == (400, "VALIDATION_ERROR")
    assert "granularity" in bad.json["error"]["details"]["fields"]


ACTIONS = st.lists(
    st.tuples(st.sampled_from(["valid", "denied", "revoked", "limited", "unknown"]), st.booleans()),
    min_size=1,
    max_size=12,
)


@requires_postgres_and_redis
@hypothesis_settings(
    max_examples=5,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(actions=ACTIONS)
def test_random_requests_across_two_servers_are_counted_exactly(servers, project, owner, actions):
    good, good_plaintext = make_key(KeyKind.SECRET, project=project, permissions=["analysis:read"])
    revoked, revoked_plaintext = make_key(KeyKind.SECRET, project=project)
    revoke_key(actor=owner, api_key=revoked)
    limited, limited_plaintext = make_key(KeyKind.SECRET, project=project)
    set_rate_limit(limited, 2, 3600)
    access = account_services.start_session(owner).access
    expected = {key.id: [0, 0] for key in (good, revoked, limited)}

    for action, on_first in actions:
        url = servers[0 if on_first else 1].url
        if action == "valid":
            assert call(url, "GET", "/v1/me", headers=bearer(good_plaintext)).status == 200
            expected[good.id][0] += 1
        elif action == "denied":
            reply = call(url, "POST", "/v1/analyses", headers=bearer(good_plaintext), body=ANALYSIS)
            assert reply.status == 403
            expected[good.id][0] += 1
            expected[good.id][1] += 1
        elif action == "revoked":
            assert call(url, "GET", "/v1/me", headers=bearer(revoked_plaintext)).status in (
                401,
                429,
            )
            expected[revoked.id][0] += 1
            expected[revoked.id][1] += 1
        elif action == "limited":
            counts = expected[limited.id]
            reply = call(url, "GET", "/v1/me", headers=bearer(limited_plaintext))
            assert reply.status == (200 if counts[0] < 2 else 429), "limits hold across servers"
            counts[1] += counts[0] >= 2
            counts[0] += 1
        else:
            unknown = keyformat.generate(KeyKind.SECRET)
            assert call(url, "GET", "/v1/me", headers=bearer(unknown)).status in (401, 429)
    sent_at = time.monotonic()

    urls = [server.url for server in servers]
    for api_key in (good, revoked, limited):
        requests, refused = expected[api_key.id]
        wait_for_usage(
            urls,
            usage_path(project, api_key),
            access,
            {"requests": requests, "refused": refused},
            sent_at,
        )


@requires_postgres_and_redis
def test_a_server_copies_counts_by_itself_so_a_redis_restart_loses_nothing_older(
    django_db_blocker, transactional_db, project, owner
):
    env = {"REDIS_URL": settings.REDIS_URL, "USAGE_FLUSH_SECONDS": "1"}
    with django_db_blocker.unblock():
        server = GunicornServer(env=env, workers=1).start()
    try:
        api_key, plaintext = make_key(KeyKind.SECRET, project=project)
        for _ in range(4):
            assert call(server.url, "GET", "/v1/me", headers=bearer(plaintext)).status == 200
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            copied = KeyUsage.objects.filter(key=api_key, granularity="hour").first()
            if copied is not None and copied.requests == 4:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the server never copied its counts")

        redis_client().flushdb()  # a restart without persistence
        assert call(server.url, "GET", "/v1/me", headers=bearer(plaintext)).status == 200
        access = account_services.start_session(owner).access
        body = wait_for_usage(
            [server.url],
            usage_path(project, api_key),
            access,
            {"requests": 5, "refused": 0},
            time.monotonic(),
        )
        assert body["series"][-1]["requests"] + body["series"][-2]["requests"] == 5
    finally:
        server.stop()


def test_with_redis_down_a_server_serves_every_request_and_logs_a_warning(
    django_db_blocker, transactional_db, project
):
    env = {"REDIS_URL": f"redis://127.0.0.1:{closed_port()}/0"}
    with django_db_blocker.unblock():
        server = GunicornServer(env=env, workers=1).start()
    try:
        api_key, plaintext = make_key(KeyKind.SECRET, project=project)
        set_rate_limit(api_key, 1, 3600)
        replies = [call(server.url, "GET", "/v1/me", headers=bearer(plaintext)) for _ in range(4)]
    finally:
        server.stop()

    assert [reply.status for reply in replies] == [200] * 4, "never refused"
    assert "usage store unavailable" in server.log_path.read_text()
