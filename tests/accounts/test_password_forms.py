"""A password is the same password in any Unicode form (NIST SP 800-63B §5.1.1.2: NFKC).

Found by a Unicode audit: signed up with a composed "é" (NFC, as most keyboards type it),
the account refused the same password typed as "e" plus a combining accent (NFD, as some
systems and input methods send it), and full-width letters of a CJK input method. Hashes
made before passwords were stabilized still log in, and are stored stabilized from then on.
"""

from __future__ import annotations

import unicodedata

import pytest
from django.contrib.auth.hashers import MD5PasswordHasher, make_password
from rest_framework.test import APIClient

from apps.accounts import services
from apps.accounts.models import User
from tests.factories import UserFactory
from tests.orgs.helpers import bearer_client

pytestmark = pytest.mark.django_db

TYPED = "Crème-brûlée-Straße-2026"
NFC, NFD = unicodedata.normalize("NFC", TYPED), unicodedata.normalize("NFD", TYPED)
FULL_WIDTH = "".join(chr(ord(c) - 0x21 + 0xFF01) for c in "passphrase-2026")  # CJK IME


def log_in(email: str, password: str) -> int:
    body = {"email": email, "password": password}
    return APIClient().post("/v1/auth/login", body, format="json").status_code


@pytest.mark.parametrize(
    ("signed_up", "typed"), [(NFC, NFD), (NFD, NFC), (FULL_WIDTH, "passphrase-2026")]
)
def test_a_password_logs_in_in_any_unicode_form(signed_up, typed):
    body = {"email": "ana@example.com", "password": signed_up, "organizationName": "Acme"}
    assert APIClient().post("/v1/auth/signup", body, format="json").status_code == 201

    assert log_in("ana@example.com", typed) == 200
    assert log_in("ana@example.com", signed_up) == 200
    assert log_in("ana@example.com", typed + "x") == 401


def test_a_changed_password_is_stabilized_too():
    user = UserFactory()
    services.change_password(user=user, new_password=NFD)
    assert log_in(user.email, NFC) == 200


def test_a_hash_made_before_is_right_as_typed_and_then_stored_stabilized():
    user = UserFactory()
    User.objects.filter(pk=user.pk).update(password=make_password(NFD))  # as it was stored
    user.refresh_from_db()
    open_session = services.start_session(user)

    assert log_in(user.email, NFD) == 200  # as typed when it was set

    user.refresh_from_db()
    assert user.check_password(NFC) and log_in(user.email, NFC) == 200
    # re-stored, not changed: the sessions open before stay open
    assert bearer_client(open_session.access).get("/v1/me").status_code == 200


# Found by a review of the change above ---------------------------------------------------


def full_width(text: str) -> str:
    return "".join(chr(ord(c) - 0x21 + 0xFF01) if "!" <= c <= "~" else c for c in text)


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        (full_width("password123"), "too common"),  # stored as "password123"
        ("e\u0301" * 5 + "Zq!", "too short"),  # 13 characters typed, 8 stored
    ],
)
def test_the_password_rules_judge_the_password_as_it_is_stored(password, rule):
    body = {"email": "ana@example.com", "password": password, "organizationName": "Acme"}
    response = APIClient().post("/v1/auth/signup", body, format="json")

    assert response.status_code == 400
    assert rule in " ".join(response.json()["error"]["details"]["fields"]["password"])
    assert not User.objects.filter(email="ana@example.com").exists()


def test_an_unknown_email_takes_as_many_hashes_as_a_known_one(monkeypatch):
    """A wrong password that NFKC changes is checked twice for a known account (as stored,
    then as typed, for hashes made before); an unknown email must do the same work, or
    its quicker answer tells which addresses have accounts (~420 against ~240 ms)."""
    user = UserFactory()
    hasher = MD5PasswordHasher
    calls = []
    original = hasher.encode  # the tests' hasher: its verify encodes too, one hash each

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(hasher, "encode", counting)

    hashes = {}
    for email in (user.email, "nobody@example.com"):
        calls.clear()
        assert log_in(email, full_width("wrong-guess")) == 401
        hashes[email] = len(calls)

    assert hashes[user.email] == hashes["nobody@example.com"] == 2
