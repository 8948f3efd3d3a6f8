"""A new password is hashed before the transaction that stores it, on every path that sets
one: on SQLite a transaction holds the database's write lock from its start (settings), and
an Argon2 hash takes ~180 ms, so a hash inside one held every other write of the demo.
(Log-in's check and upgrade: `test_sessions.py`.)"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from django.contrib.auth.hashers import MD5PasswordHasher
from django.db import connection
from django.test import Client

from apps.accounts.models import User
from apps.accounts.password_reset import make_reset_token
from tests.factories import PASSWORD
from tests.pages import logged_in

NEW_PASSWORD = "a-brand-new-passphrase-2026"


def sign_up(api_client, **_):
    answer = api_client.post(
        "/v1/auth/signup",
        {"email": "new@example.com", "password": NEW_PASSWORD, "organizationName": "New"},
        format="json",
    )
    assert answer.status_code == 201, answer.content
    return User.objects.get(email="new@example.com")


def sign_up_from_an_invitation(owner, organization, mailbox, **_):
    invited = logged_in(owner).post(
        f"/orgs/{organization.id}/invitations/", {"email": "new@example.com", "role": "member"}
    )
    assert invited.status_code == 302
    [mail] = mailbox.messages("new@example.com")
    answer = Client().post(urlsplit(mail.link("/invitations/")).path, {"password": NEW_PASSWORD})
    assert answer.status_code == 302, answer.content
    return User.objects.get(email="new@example.com")


def change_on_the_account_page(owner, **_):
    answer = logged_in(owner).post(
        "/account/password/", {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    )
    assert answer.status_code == 302
    return owner


def reset(api_client, owner, **_):
    answer = api_client.post(
        "/v1/auth/password-reset/confirm",
        {"token": make_reset_token(owner), "password": NEW_PASSWORD},
        format="json",
    )
    assert answer.status_code == 204, answer.content
    return owner


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "set_password",
    [sign_up, sign_up_from_an_invitation, change_on_the_account_page, reset],
)
def test_a_new_password_is_hashed_outside_any_transaction(
    set_password, api_client, owner, organization, mailbox, monkeypatch
):
    hashed_in_a_transaction = []
    encode = MD5PasswordHasher.encode  # the tests' preferred hasher (test_settings)

    def watched(self, password, salt):
        if password == NEW_PASSWORD:
            hashed_in_a_transaction.append(connection.in_atomic_block)
        return encode(self, password, salt)

    monkeypatch.setattr(MD5PasswordHasher, "encode", watched)

    user = set_password(
        api_client=api_client, owner=owner, organization=organization, mailbox=mailbox
    )

    assert hashed_in_a_transaction == [False]
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
