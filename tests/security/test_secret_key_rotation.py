"""Rotating SECRET_KEY (README → Production → Rotating SECRET_KEY): with the old key in
SECRET_KEY_FALLBACKS every sealed secret still opens, `manage.py reseal_secrets` seals each
one again under the new key, and then the old key can go."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from apps.accounts import twofactor
from apps.accounts.models import TotpDevice
from apps.accounts.password_reset import make_reset_token
from apps.webhooks import crypto
from apps.webhooks.models import Webhook
from core import sealed
from core.permissions import Role
from tests.factories import MembershipFactory, make_webhook

pytestmark = pytest.mark.django_db

NEW_KEY = "a-new-secret-key-after-rotation-0123456789abcdefghij"
UNKNOWN_KEY = "a-key-this-deployment-never-had-0123456789abcdefghij"


@pytest.fixture
def stored(owner, organization, settings):
    """A webhook and a two-factor set-up, their secrets sealed under the old SECRET_KEY."""
    webhook = make_webhook(organization, owner)
    setup = twofactor.start_setup(user=owner)
    return webhook.secret, setup.secret


def rotate(settings) -> None:
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = NEW_KEY


def secrets_now() -> tuple[str, str]:
    webhook = Webhook.objects.get()
    device = TotpDevice.objects.get()
    return crypto.decrypt_secret(webhook.secret_ciphertext), twofactor.decrypt_secret(
        device.encrypted_secret
    )


def test_resealed_secrets_open_without_the_old_key(stored, settings, capsys):
    rotate(settings)

    call_command("reseal_secrets")

    out = capsys.readouterr().out
    assert "webhooks.Webhook.secret_ciphertext: 1 sealed again, 0 already" in out
    assert "accounts.TotpDevice.encrypted_secret: 1 sealed again, 0 already" in out
    settings.SECRET_KEY_FALLBACKS = []
    assert secrets_now() == stored
    call_command("reseal_secrets")
    assert "0 sealed again, 1 already under SECRET_KEY" in capsys.readouterr().out


def test_a_secret_no_configured_key_opens_is_named_and_left_as_it_is(
    stored, owner, organization, settings
):
    settings.SECRET_KEY = UNKNOWN_KEY
    lost = make_webhook(organization, owner, "https://8.8.8.8/other")
    lost_token = Webhook.objects.get(pk=lost.webhook.pk).secret_ciphertext
    settings.SECRET_KEY = NEW_KEY  # the fixture's key is gone too, and nothing names UNKNOWN_KEY
    settings.SECRET_KEY_FALLBACKS = []

    with pytest.raises(CommandError) as refused:
        call_command("reseal_secrets")

    assert f"webhooks.Webhook {lost.webhook.pk}" in str(refused.value)
    assert Webhook.objects.get(pk=lost.webhook.pk).secret_ciphertext == lost_token
    assert UNKNOWN_KEY not in str(refused.value) and NEW_KEY not in str(refused.value)


def test_a_secret_replaced_while_resealing_is_not_overwritten(stored, settings, monkeypatch):
    rotate(settings)
    replaced = twofactor.encrypt_secret("a set-up started again meanwhile")
    reseal = sealed.reseal

    def reseal_while_replaced(purpose, token):
        if purpose == twofactor.SECRET_PURPOSE:  # another request, between the read and the write
            TotpDevice.objects.update(encrypted_secret=replaced)
        return reseal(purpose, token)

    monkeypatch.setattr(sealed, "reseal", reseal_while_replaced)
    call_command("reseal_secrets")

    assert TotpDevice.objects.get().encrypted_secret == replaced
    settings.SECRET_KEY_FALLBACKS = []
    assert crypto.decrypt_secret(Webhook.objects.get().secret_ciphertext) == stored[0]


def test_a_reset_link_sent_before_a_rotation_still_sets_the_password(owner, settings):
    token = make_reset_token(owner)
    rotate(settings)

    response = APIClient().post(
        "/v1/auth/password-reset/confirm",
        {"token": token, "password": "a-new-password-after-the-rotation"},
        format="json",
    )

    assert response.status_code == 204
    owner.refresh_from_db()
    assert owner.check_password("a-new-password-after-the-rotation")


def test_many_unreadable_secrets_are_named_twenty_at_most(owner, organization, settings):
    """Found by a commands audit: a wrong key listed every row, one 165 KB line."""
    settings.SECRET_KEY = UNKNOWN_KEY
    other = MembershipFactory(role=Role.OWNER)  # 20 webhooks at most per organization
    for n in range(22):
        where, who = (organization, owner) if n % 2 else (other.organization, other.user)
        make_webhook(where, who, f"https://8.8.8.8/hook-{n}")
    settings.SECRET_KEY = NEW_KEY
    settings.SECRET_KEY_FALLBACKS = []

    with pytest.raises(CommandError) as refused:
        call_command("reseal_secrets", verbosity=0)

    message = str(refused.value)
    assert message.count("webhooks.Webhook ") == 20
    assert "... and 2 more." in message
    assert message.endswith(
        "None opens: SECRET_KEY / SECRET_KEY_FALLBACKS are probably not the ones these "
        "were sealed under."
    )


def test_some_secrets_unreadable_is_not_blamed_on_the_keys(stored, owner, organization, settings):
    rotate(settings)
    settings.SECRET_KEY = UNKNOWN_KEY
    make_webhook(organization, owner, "https://8.8.8.8/other")
    settings.SECRET_KEY = NEW_KEY

    with pytest.raises(CommandError) as refused:
        call_command("reseal_secrets", verbosity=0)

    assert "webhooks.Webhook " in str(refused.value)
    assert "None opens" not in str(refused.value)
