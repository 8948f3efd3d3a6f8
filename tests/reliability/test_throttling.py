"""Throttling: what is counted, per what, who is never locked out, and how it is shared.

In-process tests lower the limits with override_settings and hold the throttle's
clock at the first second of a window (`throttle_clock`); servers get their limits
from `tests.reliability.low_rate_settings` (one-hour windows) and start their clock
at the first second of an hour. So no window boundary passes mid-test.
"""

from __future__ import annotations

import hashlib
import uuid

import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import override_settings
from rest_framework.test import APIClient

from apps.accounts import services as account_services
from apps.apikeys import services as key_services
from apps.apikeys.keyformat import KeyKind, generate
from apps.orgs import services as org_services
from apps.projects import services as project_services
from apps.projects.models import Project
from core import failopen, throttling
from core.errors import RateLimited
from core.permissions import ALL_PERMISSIONS
from core.sharedredis import redis_client
from tests.conftest import WINDOW_START
from tests.conftest import bearer as api_bearer
from tests.factories import PASSWORD, OrganizationFactory, UserFactory, make_key
from tests.pages import logged_in
from tests.reliability.helpers import (
    RECORDED_CACHE_KEYS,
    bearer,
    call,
    hung_redis,
    recording_key_function,
    unreachable_redis,
)
from tests.reliability.low_rate_settings import LOW_LIMIT

LIMIT = 3
WINDOW = 3600
LOW_RATE_SETTINGS = "tests.reliability.low_rate_settings"

pytestmark = pytest.mark.usefixtures("throttle_clock")


def rates(**scopes: int):
    """override_settings with `scope=limit` lowered (one-hour windows)."""
    return override_settings(
        THROTTLE_RATES={
            **settings.THROTTLE_RATES,
            **{scope: (limit, WINDOW) for scope, limit in scopes.items()},
        }
    )


def assert_rate_limited(response) -> None:
    assert response.status_code == 429, response.content
    assert response.json()["error"]["code"] == "RATE_LIMITED"
    assert 0 < int(response["Retry-After"]) <= WINDOW


def _fail(api_client, ip: str = "198.51.100.1"):
    return api_client.get(
        "/v1/me", HTTP_AUTHORIZATION=f"Bearer {generate(KeyKind.SECRET)}", REMOTE_ADDR=ip
    )


# Failed credentials per client IP ------------------------------------------------------------


@rates(failed_auth_ip=LIMIT)
def test_failed_credentials_per_ip_are_throttled_after_the_limit(db, api_client):
    for _ in range(LIMIT):
        assert _fail(api_client).json()["error"]["code"] == "KEY_INVALID"
    assert_rate_limited(_fail(api_client))


@rates(failed_auth_ip=LIMIT)
def test_other_clients_are_not_throttled_by_one_clients_failures(db, api_client):
    for _ in range(LIMIT + 1):
        _fail(api_client, "198.51.100.1")
    assert _fail(api_client, "198.51.100.2").status_code == 401


@rates(failed_auth_ip=LIMIT)
def test_valid_credentials_from_a_throttled_ip_still_work(db, api_client, project, owner):
    _key, plaintext = make_key(KeyKind.SECRET, project=project)
    token = account_services.start_session(owner).access
    for _ in range(LIMIT + 2):
        _fail(api_client)
    assert_rate_limited(_fail(api_client))

    ok = api_client.get("/v1/me", REMOTE_ADDR="198.51.100.1", **api_bearer(plaintext))
    assert ok.status_code == 200
    ok = api_client.get("/v1/me", REMOTE_ADDR="198.51.100.1", **api_bearer(token))
    assert ok.status_code == 200


@rates(failed_auth_ip=LIMIT)
def test_successful_requests_are_not_counted(db, api_client, project):
    _key, plaintext = make_key(KeyKind.SECRET, project=project)
    for _ in range(LIMIT * 3):
        ok = api_client.get("/v1/me", REMOTE_ADDR="198.51.100.1", **api_bearer(plaintext))
        assert ok.status_code == 200
    assert _fail(api_client).status_code == 401


@rates(failed_auth_ip=LIMIT)
@pytest.mark.parametrize(
    "authorization",
    ["Basic dXNlcjpwYXNz", "Bearer ss_secret_garbage", "Bearer not.a.jwt", "Bearer tb_0123456789"],
)
def test_every_kind_of_bad_credential_counts(db, api_client, authorization):
    for _ in range(LIMIT):
        response = api_client.get(
            "/v1/me", HTTP_AUTHORIZATION=authorization, REMOTE_ADDR="198.51.100.3"
        )
        assert response.status_code == 401
    assert_rate_limited(
        api_client.get("/v1/me", HTTP_AUTHORIZATION=authorization, REMOTE_ADDR="198.51.100.3")
    )


# Logins per account and per client -----------------------------------------------------------


def _login(api_client, email: str, password: str, ip: str):
    return api_client.post(
        "/v1/auth/login", {"email": email, "password": password}, format="json", REMOTE_ADDR=ip
    )


@rates(login_account=LIMIT)
def test_failed_logins_lock_the_account_whatever_the_client(db, api_client):
    user = UserFactory()
    for n in range(LIMIT):
        response = _login(api_client, user.email, "wrong-password", f"198.51.100.{n + 10}")
        assert response.json()["error"]["code"] == "INVALID_CREDENTIALS"
    assert_rate_limited(_login(api_client, user.email, PASSWORD, "198.51.100.99"))
    assert_rate_limited(_login(api_client, user.email.upper(), PASSWORD, "198.51.100.98"))

    other = UserFactory()
    assert _login(api_client, other.email, PASSWORD, "198.51.100.99").status_code == 200


@rates(login_account=LIMIT)
def test_successful_logins_do_not_count_against_the_account(db, api_client):
    user = UserFactory()
    for n in range(LIMIT * 2):
        assert _login(api_client, user.email, PASSWORD, f"198.51.100.{n + 10}").status_code == 200


@rates(login_ip=LIMIT)
def test_logins_per_client_are_throttled_across_accounts(db, api_client):
    users = [UserFactory() for _ in range(LIMIT + 1)]
    for user in users[:LIMIT]:
        assert _login(api_client, user.email, PASSWORD, "198.51.100.20").status_code == 200
    assert_rate_limited(_login(api_client, users[LIMIT].email, PASSWORD, "198.51.100.20"))
    assert _login(api_client, users[LIMIT].email, PASSWORD, "198.51.100.21").status_code == 200


@rates(login_ip=LIMIT)
def test_unknown_emails_count_against_the_client(db, api_client):
    for n in range(LIMIT):
        response = _login(api_client, f"nobody{n}@example.com", PASSWORD, "198.51.100.22")
        assert response.json()["error"]["code"] == "INVALID_CREDENTIALS"
    assert_rate_limited(_login(api_client, "nobody@example.com", PASSWORD, "198.51.100.22"))


@rates(signup_ip=LIMIT)
def test_signups_per_client_are_throttled(db, api_client):
    def signup(ip):
        body = {
            "email": f"s-{uuid.uuid4().hex[:10]}@example.com",
            "password": "a-long-enough-password-1",
            "organizationName": "Org",
        }
        return api_client.post("/v1/auth/signup", body, format="json", REMOTE_ADDR=ip)

    for _ in range(LIMIT):
        assert signup("198.51.100.30").status_code == 201
    assert_rate_limited(signup("198.51.100.30"))
    assert signup("198.51.100.31").status_code == 201


@rates(refresh_ip=LIMIT)
def test_refreshes_per_client_are_throttled(db, api_client, owner):
    refresh = account_services.start_session(owner).refresh
    for _ in range(LIMIT):
        response = api_client.post(
            "/v1/auth/refresh", {"refresh": refresh}, format="json", REMOTE_ADDR="198.51.100.40"
        )
        assert response.status_code == 200
        refresh = response.json()["refresh"]
    assert_rate_limited(
        api_client.post(
            "/v1/auth/refresh", {"refresh": refresh}, format="json", REMOTE_ADDR="198.51.100.40"
        )
    )


# Minting per organization --------------------------------------------------------------------


@rates(mint_org=LIMIT)
def test_minting_is_throttled_per_organization_by_the_service(db, project):
    for _ in range(LIMIT):
        make_key(KeyKind.SECRET, project=project)
    with pytest.raises(RateLimited):
        make_key(KeyKind.ORGANIZATION, organization=project.organization)
    make_key(KeyKind.SECRET, organization=OrganizationFactory())  # another organization


@rates(mint_org=LIMIT)
def test_minting_through_the_api_answers_429_past_the_limit(db, api_client, project, owner):
    token = account_services.start_session(owner).access
    body = {"name": "ci", "permissions": list(ALL_PERMISSIONS)}
    url = f"/v1/projects/{project.id}/api-keys"
    minted = [api_client.post(url, body, format="json", **api_bearer(token)) for _ in range(LIMIT)]
    assert [r.status_code for r in minted] == [201] * LIMIT
    assert_rate_limited(api_client.post(url, body, format="json", **api_bearer(token)))
    # Rolling mints a key too, so it is no way around the limit.
    roll = f"{url}/{minted[0].json()['id']}/roll"
    assert_rate_limited(
        api_client.post(roll, {"graceSeconds": 0}, format="json", **api_bearer(token))
    )


@rates(mint_user=LIMIT)
def test_minting_is_throttled_per_user_across_organizations(db, owner, project):
    elsewhere = OrganizationFactory()
    for n in range(LIMIT):
        make_key(KeyKind.SECRET, project=project if n % 2 else None, actor=owner)
    with pytest.raises(RateLimited):
        make_key(KeyKind.ORGANIZATION, organization=elsewhere, actor=owner)
    make_key(KeyKind.ORGANIZATION, organization=elsewhere, actor=UserFactory())  # another user


@rates(create_project_user=LIMIT)
def test_project_creation_is_throttled_per_user_across_organizations(db, owner, organization):
    elsewhere = org_services.create_organization(actor=owner, name="Elsewhere")
    for n in range(LIMIT):
        project_services.create_project(
            actor=owner, organization=organization if n % 2 else elsewhere, name=f"P{n}"
        )
    path = f"/v1/organizations/{organization.id}/projects"
    client = APIClient()
    client.credentials(**api_bearer(account_services.start_session(owner).access))
    assert_rate_limited(client.post(path, {"name": "One more"}, format="json"))
    page = logged_in(owner).post(f"/orgs/{organization.id}/projects/", {"name": "One more"})
    assert page.status_code == 200 and "Too many requests" in page.content.decode()
    assert not Project.objects.filter(name="One more").exists()
    other = UserFactory()
    project_services.create_project(actor=other, organization=organization, name="Theirs")


# Key changes per organization and per user --------------------------------------------------


@rates(key_update_org=LIMIT)
def test_key_changes_are_throttled_per_organization(db, api_client, project, owner):
    """Each change records an audit event and a `key.updated` event for each of the
    organization's webhooks: unthrottled, 100 renames in 19 s queued 2,000 POSTs to one URL
    (a pentest, 20 webhooks naming it). The dashboard's dialogs are no way around it."""
    key, _text = make_key(KeyKind.SECRET, project=project, actor=owner)
    token = account_services.start_session(owner).access
    url = f"/v1/projects/{project.id}/api-keys/{key.id}"
    renamed = [
        api_client.patch(url, {"name": f"n{n}"}, format="json", **api_bearer(token))
        for n in range(LIMIT)
    ]
    assert [r.status_code for r in renamed] == [200] * LIMIT
    assert_rate_limited(
        api_client.patch(url, {"name": "one more"}, format="json", **api_bearer(token))
    )
    page = logged_in(owner).post(
        f"/projects/{project.id}/api-keys/{key.id}/limits/", {"allowed_ips": "203.0.113.0/24"}
    )
    assert page.status_code == 200 and "Too many requests" in page.content.decode()
    sdk, _ = make_key(KeyKind.PUBLIC, project=project, actor=owner)
    page = logged_in(owner).post(
        f"/projects/{project.id}/sdk-keys/{sdk.id}/origins/",
        {"allowed_origins": "https://shop.example"},
    )
    assert page.status_code == 200 and "Too many requests" in page.content.decode()
    key.refresh_from_db()
    sdk.refresh_from_db()
    assert (key.name, key.allowed_ips, sdk.allowed_origins) == (f"n{LIMIT - 1}", [], [])
    other, _ = make_key(KeyKind.SECRET, organization=OrganizationFactory())
    key_services.update_key(actor=None, api_key=other, changes={"name": "elsewhere"})


@rates(key_update_user=LIMIT)
def test_key_changes_are_throttled_per_user_across_organizations(db, owner, project):
    elsewhere = org_services.create_organization(actor=owner, name="Elsewhere")
    here, _ = make_key(KeyKind.SECRET, project=project, actor=owner)
    there, _ = make_key(KeyKind.ORGANIZATION, organization=elsewhere, actor=owner)
    for n in range(LIMIT):
        key_services.update_key(
            actor=owner, api_key=here if n % 2 else there, changes={"name": f"n{n}"}
        )
    with pytest.raises(RateLimited):
        key_services.update_key(actor=owner, api_key=there, changes={"name": "one more"})
    key_services.update_key(actor=UserFactory(), api_key=there, changes={"name": "another user"})


# Leak reports per client ---------------------------------------------------------------------


@rates(leak_report_ip=LIMIT)
def test_leak_reports_per_client_are_throttled(db, api_client):
    def report(ip):
        body = {"keys": [generate(KeyKind.SECRET)]}
        return api_client.post("/v1/leaked-keys", body, format="json", REMOTE_ADDR=ip)

    for _ in range(LIMIT):
        assert report("198.51.100.50").status_code == 202
    assert_rate_limited(report("198.51.100.50"))
    assert report("198.51.100.51").status_code == 202


# The counter itself --------------------------------------------------------------------------


@rates(email_code_wrong_day=LIMIT, email_code_wrong=1)
def test_a_check_refused_by_a_nested_limit_gives_the_outer_count_back(db):
    """Nested scopes (a day around five minutes): the inner limit refusing the check
    unchecked is not a failure of the outer one."""

    def wrong_guess():
        with (
            throttling.counting_failures(("email_code_wrong_day", "account")),
            throttling.counting_failures(("email_code_wrong", "account")),
        ):
            raise ValueError("a wrong code")

    with pytest.raises(ValueError):
        wrong_guess()
    for _ in range(LIMIT):
        with pytest.raises(RateLimited):
            wrong_guess()

    assert throttling.is_limited("email_code_wrong", "account") is not None
    assert throttling.is_limited("email_code_wrong_day", "account") is None


@rates(failed_auth_ip=LIMIT)
def test_counters_are_stored_under_hashed_keys(db):
    recording = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "KEY_FUNCTION": f"{recording_key_function.__module__}.recording_key_function",
        }
    }
    RECORDED_CACHE_KEYS.clear()
    redis = redis_client()  # the counters' store with REDIS_URL, the cache's without
    with override_settings(CACHES=recording):
        for _ in range(LIMIT):
            throttling.hit("failed_auth_ip", "198.51.100.60")
        assert throttling.is_limited("failed_auth_ip", "198.51.100.60") == WINDOW
        if redis is None:
            (key,) = set(RECORDED_CACHE_KEYS)  # one counter for one client in one window
            assert cache.get(key) == LIMIT
        else:
            (key,) = {name.decode() for name in redis.scan_iter("ss:throttle:*")}
            assert int(redis.get(key)) == LIMIT
            assert 0 < redis.ttl(key) <= WINDOW + 1  # it expires with its window
    assert "198.51.100.60" not in key and "198-51-100-60" not in key
    # Nor found again by guessing the address: a privacy audit reversed plain SHA-256 names.
    for spelling in ("198.51.100.60", "198.51.100.0/24"):
        guess = hashlib.sha256(f"failed_auth_ip:{spelling}".encode()).hexdigest()[:32]
        assert guess not in key


@rates(failed_auth_ip=LIMIT)
def test_retry_after_is_what_is_left_of_the_window_and_the_next_window_starts_afresh(
    db, throttle_clock
):
    throttle_clock.advance(WINDOW - 10)  # the window's last 10 seconds
    for _ in range(LIMIT):
        assert throttling.hit("failed_auth_ip", "198.51.100.61") is None
    assert throttling.hit("failed_auth_ip", "198.51.100.61") == 10
    assert throttling.is_limited("failed_auth_ip", "198.51.100.61") == 10

    throttle_clock.advance(10)

    assert throttling.is_limited("failed_auth_ip", "198.51.100.61") is None
    assert throttling.hit("failed_auth_ip", "198.51.100.61") is None


@rates(failed_auth_ip=1)
def test_the_last_second_of_a_window_is_still_that_window(db, throttle_clock):
    assert throttling.hit("failed_auth_ip", "198.51.100.62") is None  # the window's first second

    throttle_clock.advance(WINDOW - 1)
    assert throttling.hit("failed_auth_ip", "198.51.100.62") == 1  # its last: a second to wait

    throttle_clock.advance(1)
    assert throttling.hit("failed_auth_ip", "198.51.100.62") is None  # the next window


#: A budget of an hour and a UTC day (`core.throttling.enforce_all`), one event each: the
#: clock stands at midnight, so the hour's wait is 3600 and the day's 86400.
BUDGET = ("analysis_create_project", "analysis_create_project_day")
ONE_EACH = override_settings(
    THROTTLE_RATES={
        **settings.THROTTLE_RATES,
        "analysis_create_project": (1, 3600),
        "analysis_create_project_day": (1, 86400),
    }
)


@ONE_EACH
def test_with_the_hour_and_the_day_both_full_retry_after_is_the_days_wait(db):
    throttling.enforce_all(BUDGET, "project-a")

    with pytest.raises(RateLimited) as refused:
        throttling.enforce_all(BUDGET, "project-a")

    assert refused.value.retry_after == 86400  # the hour's 3600 would be a retry refused


@ONE_EACH
def test_an_event_given_back_frees_its_place_in_every_window_of_the_budget(db):
    give_back = throttling.enforce_all(BUDGET, "project-b")

    give_back()

    throttling.enforce_all(BUDGET, "project-b")  # room again in the hour and in the day
    with pytest.raises(RateLimited):
        throttling.enforce_all(BUDGET, "project-b")


@rates(failed_auth_ip=1)
def test_requests_without_a_client_address_are_not_counted_together(db):
    """No address (no peer, an unusable forwarded one) is no client to count: one shared
    count for all of them would let one such client lock out the rest."""
    for _ in range(3):
        assert throttling.hit("failed_auth_ip", None) is None
        assert throttling.attempt("failed_auth_ip", "")() is None


@ONE_EACH
def test_every_window_a_budget_counts_in_redis_expires(db):
    client = redis_client()
    if client is None:
        pytest.skip("the windows' expiry is Redis's")
    throttling.enforce_all(BUDGET, "project-c")

    keys = list(client.scan_iter("ss:throttle:analysis_create_project*"))
    assert len(keys) == 2
    assert all(0 < client.ttl(key) <= 86400 + 1 for key in keys)


@rates(failed_auth_ip=1)
def test_an_unreachable_redis_means_no_throttling_not_an_error(db, api_client, caplog):
    with override_settings(**unreachable_redis()):
        codes = [_fail(api_client).json()["error"]["code"] for _ in range(3)]
    assert codes == ["KEY_INVALID"] * 3
    assert "throttle cache unavailable" in caplog.text


@rates(failed_auth_ip=LIMIT)
def test_a_count_given_back_after_its_window_ended_is_no_cache_failure(db, caplog):
    """Without Redis (the cache's counters): the window's count expired before the attempt
    ended, so there is nothing to give back, and that is no reason to give up on the cache."""
    with override_settings(REDIS_URL=""):
        give_back = throttling.attempt("failed_auth_ip", "198.51.100.73")
        cache.clear()  # the window ended: its counter expired

        give_back()

    assert not failopen.given_up()
    assert "throttle cache unavailable" not in caplog.text


@rates(failed_auth_ip=LIMIT)
def test_a_count_given_back_after_its_window_ended_leaves_no_counter_in_redis(db):
    """A DECR of an expired counter would make it again, at -1 and with no expiry: one key
    kept for ever per attempt that outlived its window."""
    client = redis_client()
    if client is None:
        pytest.skip("the counters' expiry is Redis's")
    give_back = throttling.attempt("failed_auth_ip", "198.51.100.74")
    (key,) = client.scan_iter("ss:throttle:*")
    client.delete(key)  # the window ended: its counter expired

    give_back()

    assert not client.exists(key)


class ReadAlong:
    """A caller's command in the counter's round trip (`core.throttling.Along`): one GET."""

    def __init__(self, key: str) -> None:
        self.key, self.replies = key, None

    def queue(self, pipe) -> None:
        pipe.get(self.key)

    def answer(self, replies: list) -> None:
        self.replies = replies


@rates(failed_auth_ip=LIMIT)
def test_a_counter_redis_refuses_in_a_shared_round_trip_fails_open(db, caplog):
    """In the round trip shared with a caller's commands, replies are read without raising
    (the caller's errors are its own): the counter's own error still fails open."""
    client = redis_client()
    if client is None:
        pytest.skip("only Redis shares the round trip")
    throttling.hit("failed_auth_ip", "198.51.100.76")
    (key,) = client.scan_iter("ss:throttle:*")
    client.set(key, "not a count", keepttl=True)  # INCR will fail: not an integer
    along = ReadAlong("ss:another")

    assert throttling.hit("failed_auth_ip", "198.51.100.76", along) is None

    assert "throttle cache unavailable; failed_auth_ip not counted" in caplog.text


#: Every throttle step that asks Redis, on a budget or on a client's failures.
STEPS = {
    "hit": lambda: throttling.hit("failed_auth_ip", "198.51.100.70"),
    "attempt": lambda: throttling.attempt("failed_auth_ip", "198.51.100.70"),
    "enforce_all": lambda: throttling.enforce_all(BUDGET, "project-e"),
    "is_limited": lambda: throttling.is_limited("failed_auth_ip", "198.51.100.70"),
    "reset": lambda: throttling.reset("failed_auth_ip", "198.51.100.70"),
}


#: The same steps with nothing to count: no client address, no project.
NOTHING_TO_COUNT = {
    "hit": lambda: throttling.hit("failed_auth_ip", None),
    "attempt": lambda: throttling.attempt("failed_auth_ip", "")(),
    "enforce_all": lambda: throttling.enforce_all(BUDGET, None)(),
    "is_limited": lambda: throttling.is_limited("failed_auth_ip", None),
}


@pytest.mark.parametrize("step", NOTHING_TO_COUNT)
def test_nothing_to_count_costs_no_redis_round_trip(db, step):
    with hung_redis() as (redis_down, tried), override_settings(**redis_down):
        assert NOTHING_TO_COUNT[step]() is None
        assert tried == []


@pytest.mark.parametrize("step", STEPS)
def test_once_redis_gave_up_no_step_of_the_request_waits_for_it_again(db, step):
    """A hung Redis costs a request one wait (`core.failopen`), whichever steps follow."""
    with hung_redis() as (redis_down, tried), override_settings(**redis_down):
        assert throttling.hit("failed_auth_ip", "198.51.100.71") is None  # waits, gives up
        assert len(tried) == 1

        STEPS[step]()

        assert len(tried) == 1  # not asked again


@ONE_EACH
def test_a_give_back_after_redis_gave_up_does_not_wait_for_it(db):
    """An event counted, then Redis hangs before it is refused: its give-back is skipped, as
    the request's other steps are (the place stays taken until the window ends)."""
    give_back = throttling.enforce_all(BUDGET, "project-f")
    with hung_redis() as (redis_down, tried), override_settings(**redis_down):
        throttling.hit("failed_auth_ip", "198.51.100.72")  # waits, gives up
        assert len(tried) == 1

        give_back()

        assert len(tried) == 1


# Real servers: sharing through Redis, X-Forwarded-For -----------------------------------------


requires_redis = pytest.mark.skipif(
    not settings.REDIS_URL, reason="throttles are shared across processes only through REDIS_URL"
)


@pytest.mark.slow
@requires_redis
def test_failures_spread_over_two_servers_add_up(transactional_db, start_server):
    env = {"DJANGO_SETTINGS_MODULE": LOW_RATE_SETTINGS, "REDIS_URL": settings.REDIS_URL}
    servers = [
        start_server(env=env, workers=1, clock=WINDOW_START),
        start_server(env=env, workers=1, clock=WINDOW_START),
    ]
    replies = [
        call(servers[n % 2].url, "GET", "/v1/me", headers=bearer(generate(KeyKind.SECRET)))
        for n in range(LOW_LIMIT + 2)
    ]
    assert [r.code for r in replies[:LOW_LIMIT]] == ["KEY_INVALID"] * LOW_LIMIT
    # Each server saw only half of the failures: only a shared counter throttles here.
    assert [r.code for r in replies[LOW_LIMIT:]] == ["RATE_LIMITED"] * 2
    assert {r.status for r in replies[LOW_LIMIT:]} == {429}


@pytest.mark.slow
def test_spoofed_forwarded_for_does_not_escape_the_throttle_without_proxies(
    transactional_db, start_server
):
    server = start_server(
        env={"DJANGO_SETTINGS_MODULE": LOW_RATE_SETTINGS, "NUM_PROXIES": "0"},
        workers=1,
        clock=WINDOW_START,
    )

    def fail(forwarded_for):
        headers = {**bearer(generate(KeyKind.SECRET)), "X-Forwarded-For": forwarded_for}
        return call(server.url, "GET", "/v1/me", headers=headers)

    codes = [fail(f"203.0.113.{n}").code for n in range(LOW_LIMIT + 1)]
    assert codes == ["KEY_INVALID"] * LOW_LIMIT + ["RATE_LIMITED"]


@pytest.mark.slow
def test_behind_one_proxy_the_rightmost_forwarded_address_is_the_client(
    transactional_db, start_server
):
    server = start_server(
        env={"DJANGO_SETTINGS_MODULE": LOW_RATE_SETTINGS, "NUM_PROXIES": "1"},
        workers=1,
        clock=WINDOW_START,
    )

    def fail(forwarded_for):
        headers = {**bearer(generate(KeyKind.SECRET)), "X-Forwarded-For": forwarded_for}
        return call(server.url, "GET", "/v1/me", headers=headers)

    # The client varies what it claims; the proxy's entry (rightmost) stays the same.
    codes = [fail(f"10.9.9.{n}, 203.0.113.7").code for n in range(LOW_LIMIT + 1)]
    assert codes == ["KEY_INVALID"] * LOW_LIMIT + ["RATE_LIMITED"]
    # Another client behind the same proxy is not throttled.
    assert fail("203.0.113.8").code == "KEY_INVALID"
