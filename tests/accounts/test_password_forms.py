"""A password is the same password in any Unicode form (NIST SP 800-63B §5.1.1.2: NFKC).

Found by a Unicode audit: signed up with a composed "é" (NFC, as most keyboards type it),
the account refused the same password typed as "e" plus a combining accent (NFD, as some
systems and input methods send it), and full-width letters of a CJK input method. Hashes
made before passwords were stabilized still log in, and are stored stabilized from then on.
"""

from __future__ import annotations

import unicodedata

import pytest
from django.contrib.auth.hashers import make_password
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
