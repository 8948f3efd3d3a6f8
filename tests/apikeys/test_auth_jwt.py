"""Dashboard session tokens on the /v1 endpoints (SPEC §2.4, §3): TOKEN_INVALID and
TOKEN_EXPIRED."""

from __future__ import annotations

from datetime import timedelta

import jwt
import pytest
from django.conf import settings
from django.utils import timezone

from apps.accounts import services as account_services
from apps.accounts.models import AuthSession
from tests.analyses.helpers import send
from tests.apikeys.auth_helpers import WWW_AUTHENTICATE_INVALID, assert_error

pytestmark = pytest.mark.django_db


def _token_signed_with(secret: str, **claims) -> str:
    now = timezone.now()
    payload = {
        "iss": "sigsentry",
        "aud": "sigsentry-api",
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(hours=1)).timestamp()),
        "jti": "x" * 32,
        "typ": "access",
        "sub": "00000000-0000-0000-0000-000000000000",
        "sid": "00000000-0000-0000-0000-000000000000",
    } | claims
    return jwt.encode(payload, secret, algorithm="HS256")


@pytest.mark.parametrize(
    "make_token",
    [
        lambda user: _token_signed_with(
            "not-the-signing-key-but-just-as-long-0123456789", sub=str(user.id)
        ),
        lambda user: account_services.start_session(user).refresh,
        lambda user: "a.b.c",
        lambda user: "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
        lambda user: _token_signed_with(settings.JWT_SIGNING_KEY, sub=str(user.id)),
        lambda user: _token_signed_with(settings.JWT_SIGNING_KEY, aud="someone-else"),
    ],
    ids=["forged", "refresh-as-access", "garbage", "alg-none", "unknown-session", "audience"],
)
def test_invalid_session_tokens_are_token_invalid(api_client, project, member, make_token):
    response = send(
        api_client, "GET", "/v1/analyses", credential=make_token(member), project_id=project.id
    )
    assert_error(response, 401, "TOKEN_INVALID")
    assert response["WWW-Authenticate"] == WWW_AUTHENTICATE_INVALID


def test_token_of_an_ended_session_is_token_invalid(api_client, project, member, user_token):
    token = user_token(member)
    first = send(api_client, "GET", "/v1/config", credential=token, project_id=project.id)
    assert first.status_code == 200
    account_services.logout(session=AuthSession.objects.get(user=member))
    response = send(api_client, "GET", "/v1/config", credential=token, project_id=project.id)
    assert_error(response, 401, "TOKEN_INVALID")


def test_expired_session_token_is_token_expired(api_client, project):
    past = timezone.now() - timedelta(hours=2)
    token = _token_signed_with(
        settings.JWT_SIGNING_KEY, iat=int(past.timestamp()), exp=int(past.timestamp()) + 60
    )
    response = send(api_client, "GET", "/v1/analyses", credential=token, project_id=project.id)
    assert_error(response, 401, "TOKEN_EXPIRED")
