"""Finding 4: /admin/login/ is behind the same login throttles as the dashboard and the API.

The attack: 60 wrong passwords at /admin/login/, then the right one logged in
(staff accounts can revoke anyone's keys). Now the admin's login goes through
`authenticate_login`: per normalized account and per client, the same counters
as `/v1/auth/login`, and past a limit the right password does not get in.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client, override_settings

from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

ADMIN_LOGIN = "/admin/login/"
LIMIT = 3
WINDOW = 3600
STAFF_EMAIL = "ops@example.com"


def rates(**scopes: int):
    return override_settings(
        THROTTLE_RATES={
            **settings.THROTTLE_RATES,
            **{scope: (limit, WINDOW) for scope, limit in scopes.items()},
        }
    )


@pytest.fixture
def staff(db):
    return UserFactory(email=STAFF_EMAIL, is_staff=True, is_superuser=True)


def admin_login(client: Client, email: str, password: str, ip: str = "198.51.100.7"):
    return client.post(
        ADMIN_LOGIN, {"username": email, "password": password, "next": "/admin/"}, REMOTE_ADDR=ip
    )


def is_logged_in(client: Client) -> bool:
    return client.get("/admin/").status_code == 200


def test_the_right_password_logs_in(staff):
    client = Client()

    response = admin_login(client, STAFF_EMAIL, PASSWORD)

    assert response.status_code == 302
    assert is_logged_in(client)


def test_a_wrong_password_is_refused_with_the_usual_message(staff):
    client = Client()

    response = admin_login(client, STAFF_EMAIL, "wrong-password")

    assert response.status_code == 200
    assert "Please enter the correct email and password" in response.content.decode()
    assert not is_logged_in(client)


@rates(login_account=LIMIT)
def test_after_the_account_limit_the_right_password_does_not_get_in(staff):
    for n in range(LIMIT):
        refused = admin_login(Client(), STAFF_EMAIL, "wrong-password", f"10.0.0.{n}")
        assert refused.status_code == 200
    client = Client()

    response = admin_login(client, STAFF_EMAIL, PASSWORD, "10.0.1.1")

    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= WINDOW
    assert "Too many attempts" in response.content.decode()
    assert "sessionid" not in response.cookies or not response.cookies["sessionid"].value
    assert not is_logged_in(client)


@rates(login_account=LIMIT)
def test_look_alike_spellings_of_a_staff_email_share_one_counter(staff):
    spellings = ["OPS@EXAMPLE.COM", "op\u017f@example.com", f" {STAFF_EMAIL} "]  # long s
    for n, spelling in enumerate(spellings):
        admin_login(Client(), spelling, "wrong-password", f"10.0.2.{n}")

    client = Client()
    fullwidth = "".join(chr(ord(c) + 0xFEE0) for c in STAFF_EMAIL)
    assert admin_login(client, fullwidth, PASSWORD, "10.0.3.1").status_code == 429
    assert not is_logged_in(client)


@rates(login_ip=LIMIT)
def test_one_client_is_throttled_across_accounts(staff):
    others = [UserFactory(is_staff=True) for _ in range(LIMIT)]
    for user in others:
        admin_login(Client(), user.email, "wrong-password", "198.51.100.20")
    client = Client()

    response = admin_login(client, STAFF_EMAIL, PASSWORD, "198.51.100.20")

    assert response.status_code == 429
    assert not is_logged_in(client)
    assert admin_login(Client(), STAFF_EMAIL, PASSWORD, "198.51.100.21").status_code == 302


@rates(login_account=LIMIT)
def test_the_admin_and_the_api_share_the_account_counter(staff, api_client):
    for n in range(LIMIT):
        api_client.post(
            "/v1/auth/login",
            {"email": STAFF_EMAIL, "password": "wrong-password"},
            format="json",
            REMOTE_ADDR=f"10.0.4.{n}",
        )

    assert admin_login(Client(), STAFF_EMAIL, PASSWORD, "10.0.5.1").status_code == 429


@rates(login_account=LIMIT)
def test_failed_admin_logins_lock_the_api_login_too(staff, api_client):
    for n in range(LIMIT):
        admin_login(Client(), STAFF_EMAIL, "wrong-password", f"10.0.6.{n}")

    response = api_client.post(
        "/v1/auth/login",
        {"email": STAFF_EMAIL, "password": PASSWORD},
        format="json",
        REMOTE_ADDR="10.0.7.1",
    )
    assert response.status_code == 429


def test_a_user_who_is_not_staff_cannot_log_in_to_the_admin(db):
    UserFactory(email="someone@example.com")
    client = Client()

    response = admin_login(client, "someone@example.com", PASSWORD)

    assert response.status_code == 200
    assert not is_logged_in(client)
