"""Login and second-factor limits hold when the guesses arrive all at once.

A limit checked before any attempt is counted lets a burst of simultaneous guesses
pass the check together: ten wrong passwords allowed per account, and every one of
fifty sent at the same moment verified. Each attempt is counted before it is checked,
so at most the limit are ever checked (apps.accounts, core.throttling.counting_failures).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.contrib.auth.hashers import make_password
from django.db import connection, connections
from django.test import RequestFactory

from apps.accounts import password_reset, services, twofactor
from core.errors import InvalidCredentials, RateLimited, ValidationFailed
from tests.accounts.test_two_factor import code_at, enable_two_factor
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

LIMIT = 5
GUESSES = 20


@pytest.fixture(autouse=True)
def _concurrent_database(throttle_clock):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL's concurrent connections")


def all_at_once(guess) -> list[str]:
    """Run GUESSES calls of `guess(i)` released together; each one's outcome."""
    barrier = threading.Barrier(GUESSES)

    def one(i: int) -> str:
        barrier.wait()
        try:
            guess(i)
            return "accepted"
        except (InvalidCredentials, ValidationFailed):
            return "wrong"
        except RateLimited:
            return "limited"
        finally:
            connections.close_all()

    with ThreadPoolExecutor(GUESSES) as pool:
        return list(pool.map(one, range(GUESSES)))


def test_simultaneous_wrong_passwords_are_checked_at_most_the_limit(settings):
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "login_account": (LIMIT, 300)}
    user = UserFactory(email="burst@example.com")
    # Argon2 as in production: each check takes long enough for the others to arrive.
    user.password = make_password(PASSWORD, hasher="argon2")
    user.save(update_fields=["password"])

    outcomes = all_at_once(
        lambda i: services.authenticate_login(email=user.email, password=f"guess-{i}", request=None)
    )

    assert outcomes.count("wrong") == LIMIT
    assert outcomes.count("limited") == GUESSES - LIMIT
    with pytest.raises(RateLimited):  # the right password too, until the window ends
        services.authenticate_login(email=user.email, password=PASSWORD, request=None)


def test_simultaneous_wrong_codes_are_checked_at_most_the_limit(settings):
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "mfa_account": (LIMIT, 300)}
    user = UserFactory(email="burst-2fa@example.com")
    secret, _recovery = enable_two_factor(user)
    right = {code_at(secret, step) for step in (-1, 0, 1)}
    wrong = [code for code in (f"{i:06d}" for i in range(GUESSES + 3)) if code not in right]

    outcomes = all_at_once(
        lambda i: twofactor.check_second_factor(user=user, code=wrong[i], request=None)
    )

    assert outcomes.count("wrong") == LIMIT
    assert outcomes.count("limited") == GUESSES - LIMIT


def test_a_right_password_gives_its_count_back(settings):
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "login_account": (2, 300)}
    user = UserFactory(email="gives-back@example.com")

    for _ in range(5):
        assert services.authenticate_login(email=user.email, password=PASSWORD, request=None)
    with pytest.raises(InvalidCredentials):
        services.authenticate_login(email=user.email, password="wrong", request=None)
    with pytest.raises(InvalidCredentials):
        services.authenticate_login(email=user.email, password="wrong", request=None)
    with pytest.raises(RateLimited):
        services.authenticate_login(email=user.email, password=PASSWORD, request=None)


def test_setting_up_two_factor_does_not_use_the_clients_login_budget(settings):
    """Enabling checks the client's login limit but does not count against it."""
    from tests.orgs.helpers import user_client

    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "login_ip": (2, 300)}
    user = UserFactory(email="enabling@example.com")
    client = user_client(user)
    client.post("/v1/auth/2fa/setup")
    for _ in range(3):
        wrong = client.post("/v1/auth/2fa/enable", {"code": "000000"}, format="json")
        assert wrong.status_code == 400
    login = client.post(
        "/v1/auth/login", {"email": user.email, "password": PASSWORD}, format="json"
    )
    assert login.status_code == 200


def test_simultaneous_bad_reset_tokens_are_checked_at_most_the_limit(settings, monkeypatch):
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "failed_auth_ip": (LIMIT, 300)}
    user = UserFactory(email="burst-reset@example.com")
    lookup = password_reset.user_for_reset_token

    def slow_lookup(token):  # a loaded database: each check takes long enough for the others
        time.sleep(0.2)
        return lookup(token)

    monkeypatch.setattr(password_reset, "user_for_reset_token", slow_lookup)
    request = RequestFactory().post("/v1/auth/password-reset/confirm", REMOTE_ADDR="203.0.113.5")

    outcomes = all_at_once(
        lambda i: password_reset.confirm_password_reset(
            token=f"{user.pk}-guess{i}", password="a-new-passphrase-2026", request=request
        )
    )

    assert outcomes.count("wrong") == LIMIT
    assert outcomes.count("limited") == GUESSES - LIMIT
