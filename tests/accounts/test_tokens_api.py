"""JWT session rules through the API: forged tokens, rotation, session end and cap (SPEC §2.4)."""

from __future__ import annotations

import base64
import json
import threading
from datetime import timedelta

import jwt
import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken

from apps.accounts import services
from apps.accounts.models import AuthSession
from apps.accounts.services import REUSE_RACE_WINDOW
from tests.factories import UserFactory
from tests.orgs.helpers import bearer_client, cookie_client, error_code

pytestmark = pytest.mark.django_db

ME = "/v1/me"
REFRESH = "/v1/auth/refresh"


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def sign(claims: dict, *, key: str | None = None, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key or settings.JWT_SIGNING_KEY, algorithm=algorithm)


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def me(token: str):
    return bearer_client(token).get(ME)


def refresh(token: str):
    return APIClient().post(REFRESH, {"refresh": token}, format="json")


def assert_rejected(response, code: str = "TOKEN_INVALID", token: str | None = None):
    assert response.status_code == 401
    assert error_code(response) == code
    assert response["WWW-Authenticate"] == 'Bearer realm="sigsentry", error="invalid_token"'
    if token is not None:
        assert token not in response.content.decode()


@pytest.fixture
def pair(owner):
    return services.start_session(owner)


# Forged and misused tokens


def test_unsigned_token_with_alg_none_is_rejected(pair):
    token = jwt.encode(claims_of(pair.access), None, algorithm="none")

    assert_rejected(me(token), token=token)


def test_token_signed_with_another_key_is_rejected(pair):
    token = sign(claims_of(pair.access), key="another-signing-key-of-sufficient-length-0123")

    assert_rejected(me(token), token=token)


def test_token_signed_with_another_hmac_algorithm_is_rejected(pair):
    token = sign(claims_of(pair.access), algorithm="HS512")

    assert_rejected(me(token), token=token)


def test_tampered_payload_is_rejected(pair, member):
    header, _payload, signature = pair.access.split(".")
    forged_claims = claims_of(pair.access) | {"sub": str(member.id)}
    token = f"{header}.{b64(forged_claims)}.{signature}"

    assert_rejected(me(token), token=token)


def test_refresh_token_is_not_accepted_as_an_access_token(pair):
    assert_rejected(me(pair.refresh), token=pair.refresh)


def test_access_token_is_not_accepted_as_a_refresh_token(pair):
    assert_rejected(refresh(pair.access), token=pair.access)
    assert me(pair.access).status_code == 200


def test_expired_access_token_is_token_expired(pair):
    expired = claims_of(pair.access) | {"exp": int(timezone.now().timestamp()) - 5}

    assert_rejected(me(sign(expired)), code="TOKEN_EXPIRED")


def test_a_pair_from_a_host_whose_clock_runs_ahead_works_here(owner, time_machine):
    """Any number of web hosts (SPEC §4.14): one a second ahead issued the pair, so its
    `iat` is later than this host's clock. The dashboard was logged out by it."""
    issued = timezone.now().replace(microsecond=1000)
    time_machine.move_to(issued, tick=False)
    pair = services.start_session(owner)
    time_machine.move_to(issued - timedelta(milliseconds=1300), tick=False)

    assert me(pair.access).status_code == 200
    assert refresh(pair.refresh).status_code == 200
    page = cookie_client(owner)  # issued here, then presented to the host behind
    time_machine.move_to(issued - timedelta(milliseconds=2600), tick=False)
    assert page.get("/").status_code == 200


@pytest.mark.parametrize(
    "claim, value",
    [
        ("aud", "another-audience"),
        ("iss", "another-issuer"),
        ("typ", "id"),
        ("sid", "not-a-session-id"),  # signed, so only with the key: still 401, not a 500
    ],
)
def test_token_with_a_wrong_claim_is_rejected(pair, claim, value):
    token = sign(claims_of(pair.access) | {claim: value})

    assert_rejected(me(token))


@pytest.mark.parametrize("claim", ["sid", "jti", "exp", "aud"])
def test_token_missing_a_required_claim_is_rejected(pair, claim):
    claims = claims_of(pair.access)
    del claims[claim]

    assert_rejected(me(sign(claims)))


def test_token_naming_another_users_session_is_rejected(pair, member):
    theirs = claims_of(services.start_session(member).access)
    token = sign(claims_of(pair.access) | {"sid": theirs["sid"]})

    assert_rejected(me(token))


def test_well_formed_token_passes_the_same_checks(pair):
    # The forgeries above fail because of what was changed, not because sign() is broken.
    assert me(sign(claims_of(pair.access))).status_code == 200


# Rotation


def test_used_refresh_token_is_rejected(pair):
    assert refresh(pair.refresh).status_code == 200

    assert_rejected(refresh(pair.refresh))


def test_reuse_within_the_race_window_keeps_the_session(pair):
    rotated = refresh(pair.refresh).json()

    assert refresh(pair.refresh).status_code == 401
    assert me(rotated["access"]).status_code == 200
    assert refresh(rotated["refresh"]).status_code == 200


def test_reuse_after_the_race_window_ends_the_whole_session(pair, owner):
    rotated = refresh(pair.refresh).json()
    BlacklistedToken.objects.update(
        blacklisted_at=timezone.now() - REUSE_RACE_WINDOW - timedelta(seconds=1)
    )

    assert_rejected(refresh(pair.refresh))

    assert_rejected(me(rotated["access"]))
    assert_rejected(refresh(rotated["refresh"]))
    session = AuthSession.objects.get(user=owner)
    assert session.end_reason == AuthSession.EndReason.REFRESH_REUSED


def test_a_token_two_rotations_old_is_a_reuse_even_right_after_the_latest(pair, owner):
    """The window is the presented token's own rotation, not the session's latest: a race
    is a successor's answer on its way, and a token two generations back has none."""
    second = refresh(pair.refresh).json()
    BlacklistedToken.objects.update(blacklisted_at=timezone.now() - timedelta(minutes=5))
    refresh(second["refresh"])  # the latest rotation, a moment ago

    assert_rejected(refresh(pair.refresh))

    session = AuthSession.objects.get(user=owner)
    assert session.end_reason == AuthSession.EndReason.REFRESH_REUSED


# Sessions end


def test_changing_the_password_ends_every_session(pair, owner, member):
    bystander = services.start_session(member)

    services.change_password(user=owner, new_password="a-brand-new-passphrase")

    assert_rejected(me(pair.access))
    assert_rejected(refresh(pair.refresh))
    assert me(bystander.access).status_code == 200


def test_a_password_changed_outside_the_service_still_ends_sessions(pair, owner):
    owner.set_password("changed-by-an-operator-123")
    owner.save()

    assert_rejected(me(pair.access))
    assert_rejected(refresh(pair.refresh))


def test_deactivating_the_user_ends_every_session(pair, owner):
    services.deactivate_user(user=owner)

    assert_rejected(me(pair.access))
    assert_rejected(refresh(pair.refresh))


# The session cap (JWT_SESSION_MAX_AGE)


@override_settings(JWT_SESSION_MAX_AGE=timedelta(hours=2))
def test_tokens_never_outlive_the_session_cap(owner):
    pair = services.start_session(owner)
    session = AuthSession.objects.get(user=owner)

    assert session.expires_at - session.created_at == timedelta(hours=2)
    for token in (pair.access, pair.refresh):
        assert claims_of(token)["exp"] <= session.expires_at.timestamp()


def test_refreshing_cannot_extend_a_session_past_its_cap(pair, owner):
    # As if the login was 30 days minus 5 minutes ago.
    cap = timezone.now() + timedelta(minutes=5)
    AuthSession.objects.filter(user=owner).update(expires_at=cap)

    rotated = refresh(pair.refresh).json()

    for token in (rotated["access"], rotated["refresh"]):
        assert claims_of(token)["exp"] <= cap.timestamp()


def test_a_session_past_its_cap_is_over(pair, owner):
    AuthSession.objects.filter(user=owner).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert_rejected(me(pair.access))
    assert_rejected(refresh(pair.refresh))


# Concurrency


@pytest.mark.django_db(transaction=True)
def test_concurrent_refreshes_of_one_token_have_exactly_one_winner():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL's row locks and concurrent connections")
    pair = services.start_session(UserFactory())
    contenders = 6
    barrier = threading.Barrier(contenders)
    responses = []

    def contend():
        try:
            barrier.wait(timeout=10)
            responses.append(refresh(pair.refresh))
        finally:
            connection.close()

    threads = [threading.Thread(target=contend) for _ in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [401] * (contenders - 1)
    winner = next(r for r in responses if r.status_code == 200).json()
    assert me(winner["access"]).status_code == 200
    assert refresh(winner["refresh"]).status_code == 200
