"""Finding 5: the admin's list filters never read a secret field (400, like Django's UserAdmin).

The attack: `?digest__startswith=<hex>` answered 200 and narrowed the list, so a
staff user could recover a key's digest one character at a time; so did
`authsession/?refresh_jti__startswith=` and `?password_fingerprint__startswith=`.
"""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib import admin
from django.test import Client, RequestFactory

from apps.accounts.models import AuthSession
from apps.accounts.services import start_session
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from core.admin import is_secret_field
from tests.factories import UserFactory, make_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def ops(db) -> Client:
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def secrets(project, owner) -> dict[str, str]:
    api_key, _ = make_key(KeyKind.SECRET, project=project)
    start_session(owner)
    session = AuthSession.objects.get(user=owner)
    return {
        "digest": api_key.digest,
        "refresh_jti": session.refresh_jti,
        "password_fingerprint": session.password_fingerprint,
        "password": owner.password,
    }


ATTACKS = [
    ("apikeys/apikey", "digest__startswith", "digest"),
    ("apikeys/apikey", "digest", "digest"),
    ("apikeys/apikey", "digest__regex", "digest"),
    ("accounts/authsession", "refresh_jti__startswith", "refresh_jti"),
    ("accounts/authsession", "password_fingerprint__startswith", "password_fingerprint"),
    ("accounts/authsession", "user__password__startswith", "password"),
    ("accounts/user", "password__startswith", "password"),
    ("accounts/user", "auth_sessions__refresh_jti__startswith", "refresh_jti"),
    ("audit/auditevent", "actor_key__digest__startswith", "digest"),
]


@pytest.mark.parametrize(
    ("changelist", "lookup", "field"), ATTACKS, ids=[f"{c}?{lookup}" for c, lookup, _ in ATTACKS]
)
def test_a_lookup_on_a_secret_field_is_a_400(ops, secrets, changelist, lookup, field):
    response = ops.get(f"/admin/{changelist}/", {lookup: secrets[field][:2]})

    assert response.status_code == 400
    assert secrets[field] not in response.content.decode()


def test_the_same_lists_still_filter_on_what_is_not_secret(ops, secrets):
    api_key = ApiKey.objects.get()

    assert ops.get("/admin/apikeys/apikey/", {"prefix__startswith": "ss_secret_"}).status_code == (
        200
    )
    assert ops.get("/admin/apikeys/apikey/", {"q": api_key.prefix}).status_code == 200
    assert ops.get("/admin/accounts/authsession/", {"end_reason__exact": "logout"}).status_code == (
        200
    )


def test_every_registered_admin_refuses_lookups_on_its_models_secret_fields():
    request = RequestFactory().get("/admin/")
    checked = []
    for model in apps.get_models():
        if not admin.site.is_registered(model):
            continue
        model_admin = admin.site.get_model_admin(model)
        for field in model._meta.get_fields():
            if is_secret_field(field.name):
                for lookup in (field.name, f"{field.name}__startswith", f"{field.name}__gt"):
                    assert not model_admin.lookup_allowed(lookup, "a", request), (model, lookup)
                checked.append(f"{model._meta.label}.{field.name}")
    assert {
        "apikeys.ApiKey.digest",
        "accounts.AuthSession.refresh_jti",
        "accounts.AuthSession.password_fingerprint",
        "accounts.User.password",
    } <= set(checked)


@pytest.mark.parametrize("page", ["outstandingtoken", "blacklistedtoken"])
def test_simplejwts_token_pages_are_not_in_the_admin(ops, page):
    """They list and search every refresh token's jti, which the session admin hides."""
    assert ops.get(f"/admin/token_blacklist/{page}/").status_code == 404
