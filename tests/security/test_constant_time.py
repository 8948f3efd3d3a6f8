"""Every secret comparison on a real request path is constant-time (hmac.compare_digest).

A `==` on a secret leaks, through timing, how much of a guess is right. The
comparisons cannot be timed reliably in a test, so each module's `hmac` is
replaced by `HmacWitness`: the real module, whose `compare_digest` also notes
its operands. A request then drives each path, and the test asserts that the
secret-bearing values went through `compare_digest`: a `==` in its place
leaves the witness without that call.
"""

from __future__ import annotations

import hmac
import secrets

import pytest

from apps.accounts import email_confirmation, mfa_login, tokens, twofactor
from apps.accounts.models import User
from apps.apikeys import keyformat
from apps.apikeys.keyformat import KeyKind
from apps.invitations import selectors as invitation_selectors
from apps.invitations import services as invitation_services
from apps.orgs.models import Membership
from core import ops
from tests.accounts.test_email_confirmation import code_in, confirm_on_page, invitations_token_of
from tests.accounts.test_two_factor import (
    code_at,
    enable_two_factor,
    fresh_step,
    mfa_token,
    second_step,
)
from tests.factories import UserFactory, make_key
from tests.orgs.helpers import bearer_client, user_client
from tests.pages import logged_in

pytestmark = pytest.mark.django_db

ME = "/v1/me"


class CompareWitness:
    """Stands in for a compare function (`hmac.compare_digest`, or Django's
    `constant_time_compare` a module imported by name): the real one, its operands noted."""

    def __init__(self, real) -> None:
        self.real = real
        self.compared: list[tuple] = []

    def __call__(self, a, b) -> bool:
        self.compared.append((a, b))
        return self.real(a, b)


class HmacWitness:
    """Stands in for `hmac` in one module: the real functions, `compare_digest` a witness."""

    def __init__(self) -> None:
        self.compare_digest = CompareWitness(hmac.compare_digest)
        self.compared = self.compare_digest.compared

    def __getattr__(self, name: str):
        return getattr(hmac, name)


@pytest.fixture
def witness(monkeypatch):
    """`witness(module)`: a HmacWitness installed as that module's `hmac`."""

    def install(module) -> HmacWitness:
        spy = HmacWitness()
        monkeypatch.setattr(module, "hmac", spy)
        return spy

    return install


@pytest.fixture
def compare_witness(monkeypatch):
    """`compare_witness(module, name)`: a CompareWitness installed as `module.name`."""

    def install(module, name: str) -> CompareWitness:
        spy = CompareWitness(getattr(module, name))
        monkeypatch.setattr(module, name, spy)
        return spy

    return install


# API keys -----------------------------------------------------------------------------


def test_a_key_request_compares_checksum_and_digest_in_constant_time(project, witness):
    _api_key, key = make_key(KeyKind.SECRET, project=project)
    digest = keyformat.digest(key).encode("ascii")
    spy = witness(keyformat)

    assert bearer_client(key).get(ME).status_code == 200

    assert (key[-6:], key[-6:]) in spy.compared  # the checksum, before any query
    assert (digest, digest) in spy.compared  # the stored digest against the computed one


def test_a_wrong_checksum_is_refused_by_the_constant_time_compare(project, witness):
    _api_key, key = make_key(KeyKind.SECRET, project=project)
    tail = key[-6:]
    wrong = tail[:-1] + ("A" if tail[-1] != "A" else "B")
    spy = witness(keyformat)

    assert bearer_client(key[:-6] + wrong).get(ME).status_code == 401

    assert spy.compared == [(tail, wrong)]  # and no digest compared: nothing was looked up


# Two-factor login ---------------------------------------------------------------------


def test_a_totp_code_is_compared_in_constant_time_against_each_step(api_client, owner, witness):
    secret, _codes = enable_two_factor(owner)
    fresh_step()
    token = mfa_token(api_client, owner)
    code = code_at(secret)
    spy = witness(twofactor)

    assert second_step(api_client, token, code).status_code == 200

    against_code = [pair for pair in spy.compared if pair[1] == code]
    assert len(against_code) == 2 * twofactor.DRIFT_STEPS + 1  # every step of the window
    assert (code, code) in against_code


def test_the_mfa_tokens_password_mark_is_compared_in_constant_time(api_client, owner, witness):
    _secret, codes = enable_two_factor(owner)
    token = mfa_token(api_client, owner)
    mark = mfa_login._password_mark(owner)
    spy = witness(mfa_login)

    assert second_step(api_client, token, codes[0]).status_code == 200

    assert (mark, mark) in spy.compared


# Email confirmation -------------------------------------------------------------------


def test_an_email_confirmation_code_is_compared_in_constant_time(mailbox, compare_witness):
    user = UserFactory(email="ana@example.com", email_confirmed_at=None)
    client = logged_in(user)
    assert client.post("/account/email/send/").status_code == 302
    code = code_in(mailbox.wait_for(user.email)[0])
    stored = User.objects.values_list("email_code_digest", flat=True).get(pk=user.pk)
    spy = compare_witness(email_confirmation, "constant_time_compare")

    assert confirm_on_page(client, code).status_code == 302

    assert (stored, stored) in spy.compared
    user.refresh_from_db()
    assert user.email_confirmed_at is not None


# Invitations --------------------------------------------------------------------------


def test_an_invitation_token_is_compared_in_constant_time_at_lookup_and_under_the_lock(
    owner, organization, witness
):
    invitee = UserFactory(email="invitee@example.com")
    invitation_services.invite_member(
        actor_membership=Membership.objects.get(user=owner, organization=organization),
        email=invitee.email,
        role="member",
    )
    token = invitations_token_of(invitee)
    digest = invitation_selectors.token_digest(token)
    at_lookup, under_the_lock = witness(invitation_selectors), witness(invitation_services)

    assert user_client(invitee).post(f"/v1/invitations/{token}/accept").status_code == 200

    assert (digest, digest) in at_lookup.compared  # the stored digest against the computed one
    assert under_the_lock.compared == [(digest, digest)]  # still the invitation's token


# Metrics ------------------------------------------------------------------------------


def test_the_metrics_token_is_compared_in_constant_time(client, settings, witness):
    token = secrets.token_urlsafe(32)
    settings.METRICS_TOKEN = token
    wrong = secrets.token_urlsafe(32)
    spy = witness(ops)

    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {wrong}").status_code == 401

    assert spy.compared == [(token.encode(), token.encode()), (wrong.encode(), token.encode())]


# JWT sessions -------------------------------------------------------------------------


def test_a_jwt_request_compares_the_password_fingerprint_in_constant_time(owner, witness):
    client = user_client(owner)
    fingerprint = owner.password_fingerprint()
    spy = witness(tokens)

    assert client.get(ME).status_code == 200

    assert (fingerprint, fingerprint) in spy.compared
