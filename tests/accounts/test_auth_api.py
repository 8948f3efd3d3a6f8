"""/v1/auth/signup, login, refresh and logout (SPEC §2.4, §4.1)."""

from __future__ import annotations

import json

import pytest
from django.conf import settings
from django.test import override_settings
from rest_framework.test import APIClient

from apps.accounts import services
from apps.accounts.cookies import ACCESS_COOKIE, REFRESH_COOKIE
from apps.accounts.models import AuthSession, User
from apps.apikeys.keyformat import KeyKind
from apps.orgs.models import Membership
from core.permissions import Role
from tests.factories import PASSWORD, UserFactory, make_key
from tests.orgs.helpers import (
    bearer_client,
    cookie_client,
    error_code,
    error_fields,
    with_csrf,
)

pytestmark = pytest.mark.django_db

SIGNUP = "/v1/auth/signup"
LOGIN = "/v1/auth/login"
REFRESH = "/v1/auth/refresh"
LOGOUT = "/v1/auth/logout"
ME = "/v1/me"
NEW_PASSWORD = "a-long-enough-passphrase"


def signup(client, **overrides):
    body = {
        "email": "New.Person@Example.com",
        "password": NEW_PASSWORD,
        "organizationName": "New Co",
    } | overrides
    return client.post(SIGNUP, body, format="json")


def login(client, email, password=PASSWORD, **extra):
    return client.post(LOGIN, {"email": email, "password": password}, format="json", **extra)


def assert_session_cookies_set(response):
    for name in (ACCESS_COOKIE, REFRESH_COOKIE):
        morsel = response.cookies[name]
        assert morsel.value
        assert morsel["httponly"]
        assert morsel["samesite"] == "Lax"
        assert morsel["path"] == "/"


def assert_session_cookies_cleared(response):
    for name in (ACCESS_COOKIE, REFRESH_COOKIE):
        assert response.cookies[name].value == ""
        assert response.cookies[name]["max-age"] == 0


def me_status(access: str) -> int:
    return bearer_client(access).get(ME).status_code


# Sign-up


def test_signup_creates_a_user_who_owns_a_new_organization(api_client):
    response = signup(api_client)

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"user", "organization", "access", "refresh"}
    user = User.objects.get(email="new.person@example.com")
    assert body["user"] == {"id": str(user.id), "email": "new.person@example.com"}
    assert body["organization"]["name"] == "New Co"
    membership = Membership.objects.get(user=user)
    assert str(membership.organization_id) == body["organization"]["id"]
    assert membership.role == Role.OWNER
    assert me_status(body["access"]) == 200


def test_signup_sets_the_session_cookies_and_is_never_cached(api_client):
    response = signup(api_client)

    assert response["Cache-Control"] == "no-store"
    assert_session_cookies_set(response)
    assert response.cookies[ACCESS_COOKIE].value == response.json()["access"]


def test_signup_with_an_existing_email_in_other_case_is_rejected(api_client):
    UserFactory(email="taken@example.com")

    response = signup(api_client, email="TAKEN@example.com")

    assert response.status_code == 400
    assert "email" in error_fields(response)
    assert User.objects.filter(email__iexact="taken@example.com").count() == 1


def test_signup_reports_every_invalid_field_at_once(api_client):
    response = signup(api_client, password="short", organizationName="")

    assert response.status_code == 400
    assert set(error_fields(response)) == {"password", "organizationName"}
    assert not User.objects.exists()


def test_signup_with_an_invalid_email_is_a_validation_error(api_client):
    response = signup(api_client, email="not-an-email")

    assert response.status_code == 400
    assert set(error_fields(response)) == {"email"}
    assert not User.objects.exists()


@pytest.mark.parametrize("body", [[], "text", 42, None], ids=["list", "string", "number", "null"])
def test_auth_endpoints_answer_a_non_object_body_with_validation_error(api_client, body):
    for path in (SIGNUP, LOGIN, REFRESH):
        response = api_client.post(path, json.dumps(body), content_type="application/json")

        assert response.status_code == 400, path
        assert "body" in error_fields(response)


def test_malformed_json_is_a_validation_error(api_client):
    response = api_client.post(LOGIN, '{"email": ', content_type="application/json")

    assert response.status_code == 400
    assert error_code(response) == "VALIDATION_ERROR"


# Login


def test_login_returns_a_token_pair_and_sets_the_cookies(api_client, owner):
    response = login(api_client, owner.email)

    assert response.status_code == 200
    assert set(response.json()) == {"access", "refresh"}
    assert response["Cache-Control"] == "no-store"
    assert_session_cookies_set(response)
    assert me_status(response.json()["access"]) == 200


def test_login_ignores_the_case_of_the_email(api_client):
    user = UserFactory(email="casey@example.com")

    assert login(api_client, "  CASEY@Example.COM ").status_code == 200
    assert AuthSession.objects.filter(user=user).count() == 1


def test_wrong_password_and_unknown_email_get_the_same_answer(api_client, owner):
    wrong_password = login(api_client, owner.email, "not-the-password")
    unknown_email = login(api_client, "nobody@example.com", "not-the-password")

    assert wrong_password.status_code == unknown_email.status_code == 401
    assert wrong_password.json() == unknown_email.json()
    assert error_code(wrong_password) == "INVALID_CREDENTIALS"
    assert wrong_password["WWW-Authenticate"] == unknown_email["WWW-Authenticate"]
    assert ACCESS_COOKIE not in wrong_password.cookies


def test_deactivated_user_cannot_log_in(api_client):
    user = UserFactory(is_active=False)

    response = login(api_client, user.email)

    assert response.status_code == 401
    assert error_code(response) == "INVALID_CREDENTIALS"


def test_login_without_fields_is_a_validation_error(api_client):
    response = api_client.post(LOGIN, {}, format="json")

    assert set(error_fields(response)) == {"email", "password"}


@pytest.mark.usefixtures("throttle_clock")
@override_settings(THROTTLE_RATES=settings.THROTTLE_RATES | {"login_account": (2, 300)})
def test_repeated_failed_logins_for_one_account_are_throttled(api_client, owner):
    for _ in range(2):
        assert login(api_client, owner.email, "wrong-password").status_code == 401

    response = login(api_client, owner.email)

    assert response.status_code == 429
    assert error_code(response) == "RATE_LIMITED"
    assert int(response["Retry-After"]) > 0


def test_login_with_a_text_plain_body_is_refused_and_sets_no_cookie(api_client, owner):
    # What a cross-site HTML form can send (login CSRF): JSON text as text/plain.
    body = f'{{"email": "{owner.email}", "password": "{PASSWORD}"}}'

    response = api_client.post(LOGIN, body, content_type="text/plain")

    assert response.status_code == 400
    assert error_code(response) == "VALIDATION_ERROR"
    assert ACCESS_COOKIE not in response.cookies
    assert not AuthSession.objects.filter(user=owner).exists()


def test_login_refuses_a_content_type_longer_than_drf_reads(api_client, owner):
    """The auth endpoints chose their parser with a copy of DRF's loop, without the bound
    DRF 3.18 puts on the media type it parses (found by a dependency audit)."""
    body = f'{{"email": "{owner.email}", "password": "{PASSWORD}"}}'
    content_type = "application/json; x=" + "a" * 300

    response = api_client.post(LOGIN, body, content_type=content_type)

    assert response.status_code == 400 and error_code(response) == "VALIDATION_ERROR"
    assert not AuthSession.objects.filter(user=owner).exists()


def test_login_ignores_a_stale_authorization_header(api_client, owner):
    response = login(api_client, owner.email, HTTP_AUTHORIZATION="Bearer garbage.token.value")

    assert response.status_code == 200


# Refresh


def test_refresh_rotates_the_pair(api_client, owner):
    pair = services.start_session(owner)

    response = api_client.post(REFRESH, {"refresh": pair.refresh}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access", "refresh"}
    assert body["refresh"] != pair.refresh
    assert body["access"] != pair.access
    assert response["Cache-Control"] == "no-store"
    assert me_status(body["access"]) == 200


def test_refresh_from_the_body_sets_no_cookies(api_client, owner):
    pair = services.start_session(owner)

    response = api_client.post(REFRESH, {"refresh": pair.refresh}, format="json")

    assert response.status_code == 200
    assert ACCESS_COOKIE not in response.cookies


def test_refresh_from_the_cookie_needs_the_csrf_token(owner):
    client = cookie_client(owner)

    refused = client.post(REFRESH, {}, format="json")

    assert refused.status_code == 403
    assert error_code(refused) == "PERMISSION_DENIED"

    response = client.post(REFRESH, {}, format="json", **with_csrf(client))

    assert response.status_code == 200
    assert_session_cookies_set(response)
    # The cookies are HttpOnly: the body must not hand the tokens to page scripts.
    assert set(response.json()) == {"accessExpiresAt"}
    assert response.cookies[ACCESS_COOKIE].value not in response.content.decode()


def test_a_refresh_that_lost_a_race_leaves_the_cookies_alone(owner):
    client = cookie_client(owner)
    # Another tab rotated the same refresh token a moment ago.
    other_tab = APIClient().post(
        REFRESH, {"refresh": client.cookies[REFRESH_COOKIE].value}, format="json"
    )
    assert other_tab.status_code == 200

    response = client.post(REFRESH, {}, format="json", **with_csrf(client))

    assert response.status_code == 401
    assert error_code(response) == "TOKEN_INVALID"
    assert ACCESS_COOKIE not in response.cookies
    assert REFRESH_COOKIE not in response.cookies


def test_refresh_without_a_token_is_a_validation_error(api_client):
    response = api_client.post(REFRESH, {}, format="json")

    assert response.status_code == 400
    assert "refresh" in error_fields(response)


@pytest.mark.parametrize("token", [123, "", ["a"]], ids=["number", "empty", "list"])
def test_refresh_with_a_token_that_is_not_a_string_is_a_validation_error(api_client, token):
    response = api_client.post(REFRESH, {"refresh": token}, format="json")

    assert response.status_code == 400
    assert "refresh" in error_fields(response)


def test_refresh_with_garbage_is_token_invalid(api_client):
    response = api_client.post(REFRESH, {"refresh": "not-a-jwt"}, format="json")

    assert response.status_code == 401
    assert error_code(response) == "TOKEN_INVALID"
    assert "not-a-jwt" not in response.content.decode()


@pytest.mark.usefixtures("throttle_clock")
@override_settings(THROTTLE_RATES=settings.THROTTLE_RATES | {"refresh_ip": (2, 60)})
def test_refreshes_are_throttled_per_client(api_client, owner):
    for _ in range(2):
        assert api_client.post(REFRESH, {"refresh": "a.b.c"}, format="json").status_code == 401
    pair = services.start_session(owner)

    response = api_client.post(REFRESH, {"refresh": pair.refresh}, format="json")

    assert response.status_code == 429
    assert error_code(response) == "RATE_LIMITED"
    assert "Retry-After" in response


# Logout


def test_logout_rejects_the_sessions_access_and_refresh_tokens_at_once(owner):
    pair = services.start_session(owner)

    response = bearer_client(pair.access).post(LOGOUT)

    assert response.status_code == 204
    assert_session_cookies_cleared(response)
    rejected = bearer_client(pair.access).get(ME)
    assert rejected.status_code == 401
    assert error_code(rejected) == "TOKEN_INVALID"
    refresh = APIClient().post(REFRESH, {"refresh": pair.refresh}, format="json")
    assert refresh.status_code == 401
    assert AuthSession.objects.get(user=owner).end_reason == AuthSession.EndReason.LOGOUT


def test_logout_leaves_the_users_other_sessions_alone(owner):
    this = services.start_session(owner)
    other = services.start_session(owner)

    bearer_client(this.access).post(LOGOUT)

    assert me_status(other.access) == 200


def test_logout_with_a_refresh_token_of_another_own_session_ends_that_one_too(owner):
    this = services.start_session(owner)
    other = services.start_session(owner)

    response = bearer_client(this.access).post(LOGOUT, {"refresh": other.refresh}, format="json")

    assert response.status_code == 204
    assert me_status(other.access) == 401


def test_logout_ignores_a_refresh_token_of_another_user(owner, member):
    this = services.start_session(owner)
    theirs = services.start_session(member)

    response = bearer_client(this.access).post(LOGOUT, {"refresh": theirs.refresh}, format="json")

    assert response.status_code == 204
    assert me_status(theirs.access) == 200


def test_logout_with_a_refresh_token_that_is_not_a_string_is_refused(owner):
    pair = services.start_session(owner)

    response = bearer_client(pair.access).post(LOGOUT, {"refresh": 7}, format="json")

    assert response.status_code == 400
    assert me_status(pair.access) == 200


def test_logout_needs_a_session(api_client):
    response = api_client.post(LOGOUT)

    assert response.status_code == 401
    assert error_code(response) == "AUTHENTICATION_REQUIRED"


def test_logout_with_an_api_key_is_refused(project):
    _key, plaintext = make_key(KeyKind.SECRET, project=project)

    response = bearer_client(plaintext).post(LOGOUT)

    assert response.status_code == 403
    assert error_code(response) == "PERMISSION_DENIED"


def test_logout_with_the_cookie_needs_the_csrf_token(owner):
    client = cookie_client(owner)

    refused = client.post(LOGOUT)

    assert refused.status_code == 403
    assert AuthSession.objects.get(user=owner).ended_at is None

    response = client.post(LOGOUT, **with_csrf(client))

    assert response.status_code == 204
    assert AuthSession.objects.get(user=owner).ended_at is not None


def test_logout_with_a_bearer_token_needs_no_csrf_token(owner):
    pair = services.start_session(owner)
    client = bearer_client(pair.access, enforce_csrf_checks=True)

    assert client.post(LOGOUT).status_code == 204
