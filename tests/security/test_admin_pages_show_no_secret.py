"""No admin page shows a secret: every list, change, delete confirmation and history page
of every registered model, as a superuser sees them with a row of each kind that holds one
(keys, sessions, two-factor, recovery codes, a webhook, an invitation). The delete pages
list what goes with a row (a user's authenticator and recovery codes, an organization's
webhooks): by their names, never their secrets. A guard for what later models or admins add
(an admin audit read each page by hand)."""

from __future__ import annotations

import pytest
from django.contrib.admin import site
from django.test import Client
from django.urls import reverse

from apps.accounts.models import AuthSession, RecoveryCode, TotpDevice, User
from apps.accounts.services import start_session
from apps.apikeys.keyformat import KeyKind
from apps.invitations.services import invite_member
from apps.orgs.models import Membership
from apps.webhooks.models import Webhook
from tests.accounts.test_two_factor import enable_two_factor
from tests.factories import UserFactory, make_key, make_webhook

pytestmark = pytest.mark.django_db

#: Rows read per model: enough for one of each kind the fixture makes.
ROWS_PER_MODEL = 10


@pytest.fixture
def secrets(project, owner) -> dict[str, str]:
    """Every secret the database holds or a user was shown, by name."""
    totp_secret, recovery_codes = enable_two_factor(owner)
    start_session(owner)
    made = {"totp secret": totp_secret}
    made |= {f"recovery code {n}": code for n, code in enumerate(recovery_codes)}
    for kind in (KeyKind.PUBLIC, KeyKind.SECRET):
        api_key, plaintext = make_key(kind, project=project, actor=owner)
        made |= {f"{kind} key": plaintext, f"{kind} digest": api_key.digest}
    webhook = make_webhook(project.organization, owner)
    made["webhook secret"] = webhook.secret
    made["sealed webhook secret"] = Webhook.objects.get(pk=webhook.webhook.pk).secret_ciphertext
    invitation = invite_member(
        actor_membership=Membership.objects.get(user=owner), email="new@example.com", role="member"
    )
    made["invitation digest"] = invitation.token_digest
    for user in User.objects.all():
        *_, salt, hashed = user.password.split("$")
        made |= {f"salt of {user}": salt, f"password hash of {user}": hashed}
    for session in AuthSession.objects.all():
        made |= {
            f"jti of {session}": session.refresh_jti,
            f"fingerprint of {session}": session.password_fingerprint,
        }
    made["sealed totp secret"] = TotpDevice.objects.get().encrypted_secret
    made |= {f"{code}": code.digest for code in RecoveryCode.objects.all()}
    return made


def admin_pages(*also: str) -> list[str]:
    pages = ["/admin/", *also]
    for model in site._registry:
        name = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        pages.append(reverse(f"{name}_changelist"))
        for pk in model.objects.values_list("pk", flat=True)[:ROWS_PER_MODEL]:
            pages += [
                reverse(f"{name}_{view}", args=[pk]) for view in ("change", "delete", "history")
            ]
    return pages


def test_no_admin_page_shows_a_secret(secrets, owner):
    client = Client()
    client.force_login(UserFactory(email="root@sigsentry.dev", is_staff=True, is_superuser=True))
    shown = []

    for page in admin_pages(reverse("admin:auth_user_password_change", args=[owner.pk])):
        response = client.get(page)
        assert response.status_code in (200, 403), page  # 403: a read-only row's delete page
        text = response.content.decode()
        shown += [(page, name) for name, secret in secrets.items() if secret in text]

    assert shown == []
