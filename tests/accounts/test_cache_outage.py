"""Signing in with the throttles' cache down: throttling fails open (`core.throttling`), so
every step that first asks whether a client is over its limit (`is_limited`) lets a valid
request through.

The cache is a Redis on a closed port of 127.0.0.1, a real outage rather than a fake one.
"""

from __future__ import annotations

import contextlib

import pytest
from django.test import override_settings

from apps.accounts.password_reset import make_reset_token
from tests.accounts.test_two_factor import code_at, enable_two_factor, fresh_step
from tests.factories import PASSWORD
from tests.orgs.helpers import bearer_client
from tests.reliability.helpers import hung_redis, unreachable_redis

pytestmark = pytest.mark.django_db

LOGIN = "/v1/auth/login"
LOGIN_2FA = "/v1/auth/login/2fa"
CONFIRM = "/v1/auth/password-reset/confirm"


@contextlib.contextmanager
def cache_down(caplog):
    with override_settings(**unreachable_redis()):
        yield
    assert "cache unavailable" in caplog.text  # the outage was real (a throttle's or a mark's)


def login(client, user):
    return client.post(LOGIN, {"email": user.email, "password": PASSWORD}, format="json")


def test_a_valid_login_succeeds(api_client, owner, caplog):
    with cache_down(caplog):
        response = login(api_client, owner)

    assert response.status_code == 200
    assert bearer_client(response.json()["access"]).get("/v1/me").status_code == 200


def test_the_second_step_of_a_two_factor_login_succeeds(api_client, owner, caplog):
    secret, _codes = enable_two_factor(owner)
    first = login(api_client, owner)  # the first step is test_a_valid_login_succeeds's
    assert first.status_code == 200 and first.json()["mfaRequired"] is True
    fresh_step()
    body = {"mfaToken": first.json()["mfaToken"], "code": code_at(secret)}
    with cache_down(caplog):
        second = api_client.post(LOGIN_2FA, body, format="json")

    assert second.status_code == 200
    assert bearer_client(second.json()["access"]).get("/v1/me").status_code == 200


def test_a_password_reset_link_works(api_client, owner, caplog):
    new_password = "a-brand-new-passphrase-2026"
    body = {"token": make_reset_token(owner), "password": new_password}
    with cache_down(caplog):
        response = api_client.post(CONFIRM, body, format="json")

    assert response.status_code == 204
    owner.refresh_from_db()
    assert owner.check_password(new_password)


def test_a_two_factor_login_waits_for_a_hung_cache_once(api_client, owner):
    """The throttle, the token's used mark and its claim are three Redis steps: once one has
    waited its 250 ms, the others go on without (`core.failopen`), not 750 ms in all."""
    secret, _codes = enable_two_factor(owner)
    first = login(api_client, owner)
    fresh_step()
    body = {"mfaToken": first.json()["mfaToken"], "code": code_at(secret)}
    with hung_redis() as (redis_down, tried), override_settings(**redis_down):
        second = api_client.post(LOGIN_2FA, body, format="json")
        assert len(tried) == 1

    assert second.status_code == 200
