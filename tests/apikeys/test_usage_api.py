"""`GET <collection>/{keyId}/usage` (SPEC §4.9): who may read it, and its shape."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import Granularity, KeyUsage
from apps.apikeys.usage.flush import flush_usage
from tests.apikeys.test_openapi import assert_matches
from tests.factories import ProjectFactory, make_key
from tests.orgs.helpers import (
    bearer_client,
    collection_url,
    error_code,
    error_fields,
    key_url,
    user_client,
)

pytestmark = pytest.mark.django_db

KINDS = list(KeyKind)
KIND_IDS = [kind.name.lower() for kind in KINDS]


def usage_url(kind, project, api_key, granularity: str | None = None) -> str:
    url = key_url(kind, project, api_key, "usage")
    return url if granularity is None else f"{url}?granularity={granularity}"


def parse(moment: str) -> datetime:
    assert moment.endswith("Z"), moment
    return datetime.fromisoformat(moment)


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("role", ["owner", "admin", "member", "viewer"])
def test_any_member_reads_a_keys_hourly_usage(request, project, kind, role):
    api_key, plaintext = make_key(kind, project=project)
    caller = bearer_client(plaintext)
    headers = {"HTTP_X_PROJECT_ID": str(project.id)} if kind is KeyKind.ORGANIZATION else {}
    for _ in range(3):
        assert caller.get("/v1/me", **headers).status_code == 200

    response = user_client(request.getfixturevalue(role)).get(usage_url(kind, project, api_key))

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["keyId"] == str(api_key.id)
    assert body["granularity"] == "hour"
    assert body["total"] == {"requests": 3, "refused": 0}
    assert body["series"][-1]["requests"] == 3
    assert response["Cache-Control"] == "no-store"


def test_hourly_usage_is_48_utc_hours_oldest_first_with_zero_buckets(member, project):
    api_key, _ = make_key(KeyKind.SECRET, project=project)

    body = user_client(member).get(usage_url(KeyKind.SECRET, project, api_key, "hour")).json()

    starts = [parse(bucket["start"]) for bucket in body["series"]]
    assert len(starts) == 48
    assert all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(starts))
    assert starts[-1] == timezone.now().astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    assert all(start.minute == 0 and start.utcoffset() == timedelta(0) for start in starts)
    assert {(b["requests"], b["refused"]) for b in body["series"]} == {(0, 0)}
    assert body["total"] == {"requests": 0, "refused": 0}
    assert body["recentIps"] == []


def test_daily_usage_is_90_utc_days_oldest_first(member, project):
    api_key, _ = make_key(KeyKind.SECRET, project=project)
    today = timezone.now().astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    for days_ago, requests in ((0, 4), (89, 2), (90, 50)):
        KeyUsage.objects.create(
            key=api_key,
            granularity=Granularity.DAY,
            start=today - timedelta(days=days_ago),
            epoch="copied-earlier",
            requests=requests,
            refused=1,
        )

    body = user_client(member).get(usage_url(KeyKind.SECRET, project, api_key, "day")).json()

    starts = [parse(bucket["start"]) for bucket in body["series"]]
    assert body["granularity"] == "day"
    assert len(starts) == 90
    assert starts[0] == today - timedelta(days=89)
    assert starts[-1] == today
    assert all(b - a == timedelta(days=1) for a, b in itertools.pairwise(starts))
    assert body["series"][0] | {"start": None} == {"start": None, "requests": 2, "refused": 1}
    assert body["series"][-1]["requests"] == 4
    assert body["total"] == {"requests": 6, "refused": 2}, "the 91st day is outside the answer"


def test_recent_ips_are_listed_with_their_requests(member, project, settings, time_machine):
    settings.NUM_PROXIES = 1
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)
    caller = bearer_client(plaintext)
    start = timezone.now()
    for step, (ip, times) in enumerate((("198.51.100.7", 2), ("2001:db8::1", 1))):
        # Last-seen times are kept to the millisecond: a second apart, the order is certain.
        time_machine.move_to(start + timedelta(seconds=step), tick=True)
        for _ in range(times):
            caller.get("/v1/me", HTTP_X_FORWARDED_FOR=f"10.0.0.1, {ip}")

    body = user_client(member).get(usage_url(KeyKind.SECRET, project, api_key)).json()

    assert [(ip["ip"], ip["requests"]) for ip in body["recentIps"]] == [
        ("2001:db8::1", 1),
        ("198.51.100.7", 2),
    ]
    assert all(parse(ip["lastSeenAt"]) <= timezone.now() for ip in body["recentIps"])


def test_ips_seen_in_the_same_millisecond_are_listed_by_address_before_and_after_the_copy(
    member, project, settings, time_machine
):
    """The copy to the database must not reorder the list: ties in `lastSeenAt` (kept to the
    millisecond) are broken by address, from the live counters and from the copied rows."""
    settings.NUM_PROXIES = 1
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)
    caller = bearer_client(plaintext)
    time_machine.move_to(timezone.now(), tick=False)
    for ip in ("198.51.100.9", "2001:db8::1", "198.51.100.10", "203.0.113.5"):
        caller.get("/v1/me", HTTP_X_FORWARDED_FOR=f"10.0.0.1, {ip}")
    listed = ["198.51.100.10", "198.51.100.9", "2001:db8::1", "203.0.113.5"]
    url = usage_url(KeyKind.SECRET, project, api_key)

    live = [ip["ip"] for ip in user_client(member).get(url).json()["recentIps"]]
    flush_usage()
    copied = [ip["ip"] for ip in user_client(member).get(url).json()["recentIps"]]

    assert live == copied == listed


def test_an_ipv4_client_of_a_dual_stack_server_is_one_address_before_and_after_the_copy(
    member, project
):
    """A server listening on `[::]` sees an IPv4 client as `::ffff:203.0.113.7`: counted,
    copied and shown as 203.0.113.7, never as two addresses with the same requests."""
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)
    caller = bearer_client(plaintext)
    url = usage_url(KeyKind.SECRET, project, api_key)
    seen = []
    for _ in range(2):
        caller.get("/v1/me", REMOTE_ADDR="::ffff:203.0.113.7")
        flush_usage()
        body = user_client(member).get(url).json()
        seen.append([(ip["ip"], ip["requests"]) for ip in body["recentIps"]])

    assert seen == [[("203.0.113.7", 1)], [("203.0.113.7", 2)]]
    api_key.refresh_from_db()
    assert api_key.last_used_ip == "203.0.113.7"


@pytest.mark.parametrize("granularity", ["minute", "HOUR", "", "hour,day", "d"])
def test_a_bad_granularity_is_a_validation_error(member, project, granularity):
    api_key, _ = make_key(KeyKind.SECRET, project=project)

    response = user_client(member).get(
        usage_url(KeyKind.SECRET, project, api_key), {"granularity": granularity}
    )

    assert response.status_code == 400
    assert "granularity" in error_fields(response)


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_an_api_key_may_not_read_usage(project, kind):
    api_key, plaintext = make_key(kind, project=project)

    response = bearer_client(plaintext).get(usage_url(kind, project, api_key))

    assert response.status_code == 403
    assert error_code(response) == "KEY_MANAGEMENT_FORBIDDEN"


def test_usage_needs_a_credential(project):
    api_key, _ = make_key(KeyKind.SECRET, project=project)

    response = bearer_client("").get(usage_url(KeyKind.SECRET, project, api_key))

    assert response.status_code == 401


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("granularity", [None, "minute"])
def test_an_outsider_gets_404_whatever_the_granularity(outsider, project, kind, granularity):
    api_key, _ = make_key(kind, project=project)

    response = user_client(outsider).get(usage_url(kind, project, api_key, granularity))

    assert response.status_code == 404
    expected = "NOT_FOUND" if kind is KeyKind.ORGANIZATION else "PROJECT_NOT_FOUND"
    assert error_code(response) == expected


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_a_key_of_another_collection_is_not_found(member, project, other_project, kind):
    others = [
        make_key(other, project=where)[0]
        for other in KINDS
        for where in (project, other_project)
        if not (other is kind and (where is project or kind is KeyKind.ORGANIZATION))
    ]
    elsewhere = make_key(kind, project=ProjectFactory())[0]
    client = user_client(member)

    for api_key in [*others, elsewhere]:
        response = client.get(usage_url(kind, project, api_key))
        assert response.status_code == 404, (kind, api_key.type, api_key.scope)
        assert error_code(response) == "NOT_FOUND"


def test_an_id_that_is_not_a_uuid_is_not_found(member, project):
    response = user_client(member).get(collection_url(KeyKind.SECRET, project) + "/nope/usage")

    assert response.status_code == 404
    assert error_code(response) == "NOT_FOUND"


def test_a_revoked_key_keeps_its_usage(owner, project):
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)
    client = user_client(owner)
    assert bearer_client(plaintext).get("/v1/me").status_code == 200
    assert client.post(key_url(KeyKind.SECRET, project, api_key, "revoke")).status_code == 200
    assert bearer_client(plaintext).get("/v1/me").status_code == 401

    body = client.get(usage_url(KeyKind.SECRET, project, api_key)).json()

    assert body["total"] == {"requests": 2, "refused": 1}


# The OpenAPI document


@pytest.fixture(scope="module")
def document(django_db_blocker):
    from rest_framework.test import APIClient

    with django_db_blocker.unblock():
        return APIClient().get("/v1/schema", {"format": "json"}).json()


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_usage_is_documented_for_people_only(document, kind):
    base = {
        KeyKind.PUBLIC: "/v1/projects/{projectId}/sdk-keys",
        KeyKind.SECRET: "/v1/projects/{projectId}/api-keys",
        KeyKind.ORGANIZATION: "/v1/organizations/{orgId}/api-keys",
    }[kind]
    operation = document["paths"][base + "/{keyId}/usage"]["get"]

    assert operation["security"] == [{"jwtAuth": []}, {"sessionCookie": []}]
    (granularity,) = [p for p in operation["parameters"] if p["in"] == "query"]
    assert granularity["name"] == "granularity"
    # the answer's enum, `GranularityEnum` (one class in a generated client)
    [enum] = granularity["schema"]["allOf"]
    enum = document["components"]["schemas"][enum["$ref"].rpartition("/")[2]]
    assert sorted(enum["enum"]) == ["day", "hour"]
    assert granularity["schema"]["default"] == "hour"
    assert {"200", "400", "401", "403", "404"} <= set(operation["responses"])
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/KeyUsage"}


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_usage_responses_match_the_document(document, owner, project, kind, settings):
    settings.NUM_PROXIES = 1
    api_key, plaintext = make_key(kind, project=project)
    headers = {"HTTP_X_PROJECT_ID": str(project.id)} if kind is KeyKind.ORGANIZATION else {}
    bearer_client(plaintext).get("/v1/me", HTTP_X_FORWARDED_FOR="203.0.113.5", **headers)
    client = user_client(owner)

    responses = [
        client.get(usage_url(kind, project, api_key)),
        client.get(usage_url(kind, project, api_key, "day")),
        client.get(usage_url(kind, project, api_key, "week")),
        bearer_client(plaintext).get(usage_url(kind, project, api_key), **headers),
        client.get(usage_url(kind, project, "00000000-0000-0000-0000-000000000000")),
    ]

    assert [r.status_code for r in responses] == [200, 200, 400, 403, 404]
    assert responses[0].json()["recentIps"][0]["ip"] == "203.0.113.5"
    for response in responses:
        assert_matches(document, response)
