"""A hung Redis costs one request a second per process its 250 ms, not every request
(`core.failopen`): once a step has given up, the process skips Redis for `REST_SECONDS`,
then the first request tries again.

The Redis accepts connections and never answers (`hung_redis`); each step tried opens a
connection (a timed-out one is dropped), so the connections it accepted count the steps
that waited. The rest's clock is held still, then moved.
"""

from __future__ import annotations

import pytest
from django.test import Client, override_settings

from apps.apikeys.keyformat import KeyKind
from core import failopen
from tests.apikeys.usage_helpers import requires_redis, set_rate_limit
from tests.factories import make_key
from tests.reliability.helpers import hung_redis, redis_at

pytestmark = pytest.mark.django_db


@pytest.fixture
def rest_clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(failopen, "clock", lambda: now[0])
    return now


def test_a_hung_redis_is_waited_for_once_while_the_process_rests(project, rest_clock):
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)
    set_rate_limit(api_key, 1, 3600)  # every request has a Redis step: the key's limit
    client = Client(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    with hung_redis() as (redis_down, tried), override_settings(**redis_down):
        statuses = [client.get("/v1/me").status_code for _ in range(5)]
        assert statuses == [200] * 5  # fail open: a limit of 1 is not enforced, none refused
        assert len(tried) == 1  # the first waited; the other four did not try

        rest_clock[0] += failopen.REST_SECONDS - 0.01
        assert client.get("/v1/me").status_code == 200
        assert len(tried) == 1  # still resting

        rest_clock[0] += 0.02
        assert client.get("/v1/me").status_code == 200
        assert len(tried) == 2  # the rest is over: the next request tried (and waited) again


@requires_redis
def test_a_redis_answering_again_after_the_rest_enforces_the_limit(project, rest_clock):
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)
    set_rate_limit(api_key, 1, 3600)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    failopen.gave_up("key_usage")  # a step of an earlier request timed out
    assert [client.get("/v1/me").status_code for _ in range(3)] == [200, 200, 200]

    rest_clock[0] += failopen.REST_SECONDS
    statuses = [client.get("/v1/me").status_code for _ in range(2)]
    assert statuses == [200, 429]  # Redis is asked again: the limit of 1 holds


@pytest.mark.parametrize("setting", ["REDIS_URL", "CACHES"])
def test_a_new_redis_ends_the_rest(settings, setting):
    """Either of its users' settings: the throttles' `REDIS_URL`, or the cache's (a nonce)."""
    failopen.gave_up("key_usage")
    assert failopen.given_up()
    failopen.new_request()
    assert failopen.given_up()  # the process rests, whatever the request
    setattr(settings, setting, redis_at("redis://127.0.0.1:6379/15", timeout=0.25)[setting])
    assert not failopen.given_up()


def test_a_request_that_gave_up_skips_redis_to_its_end_even_after_the_rest(rest_clock):
    """The rest spares the process's other requests; the request that gave up skips Redis
    until it ends however long it runs (a slow one outlived the rest and waited again)."""
    failopen.new_request()
    failopen.gave_up("login_ip")
    rest_clock[0] += failopen.REST_SECONDS + 5

    assert failopen.given_up()
    failopen.new_request()
    assert not failopen.given_up()
