"""A key lifetime policy set while a key is being minted or rolled (SPEC §4.10).

Either the policy commits first and the mint is refused (400 VALIDATION_ERROR on
`expiresAt`, nothing written), or the mint commits first and is allowed: never a key
minted after the policy that breaks it. The race is staged, not hoped for: the mint
is held after the request's checks (as its transaction begins, before it locks
anything) while the owner sets the policy, then let go.

PostgreSQL only: SQLite serialises every writer, so the race cannot happen there.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from apps.audit.models import AuditEvent
from apps.orgs import access
from apps.orgs import services as org_services
from apps.orgs.models import Membership
from apps.webhooks.models import Event
from core.times import iso
from tests.factories import make_key
from tests.orgs.helpers import collection_url, error_fields, key_url, user_client

pytestmark = pytest.mark.django_db(transaction=True)

SECRET_KINDS = [KeyKind.SECRET, KeyKind.ORGANIZATION]
SECRET_IDS = ["project-api-keys", "org-api-keys"]


@pytest.fixture(autouse=True)
def _concurrent_database():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: row locks and concurrent writers")


class HeldMint:
    """Holds the next mint as its transaction begins (`access.as_manager`, before it locks
    and reads the role again; the request's checks done, the organization read) until
    `let_go()`; `call` runs the request in a thread, on a connection of its own. Only that
    first call is held: the owner setting the policy meanwhile passes the same check."""

    def __init__(self, monkeypatch) -> None:
        self.reached, self._go = threading.Event(), threading.Event()
        self.response = None
        self.error: Exception | None = None
        locked_role = access.locked_role

        def held(user, organization_id):
            if not self.reached.is_set():  # the mint's call; the owner's goes straight on
                self.reached.set()
                self._go.wait(timeout=5)
            return locked_role(user, organization_id)

        monkeypatch.setattr(access, "locked_role", held)

    def call(self, request) -> threading.Thread:
        def run() -> None:
            try:
                self.response = request()
            except Exception as exc:
                self.error = exc
            finally:
                connection.close()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        assert self.reached.wait(timeout=5), self.error
        return thread

    def let_go(self, thread: threading.Thread):
        self._go.set()
        thread.join(timeout=5)
        assert not thread.is_alive() and self.error is None, self.error
        return self.response


def set_policy(organization, owner, days: int) -> None:
    membership = Membership.objects.get(organization=organization, user=owner)
    org_services.set_key_lifetime_policy(actor_membership=membership, days=days)


@pytest.mark.parametrize("kind", SECRET_KINDS, ids=SECRET_IDS)
def test_a_policy_set_while_a_key_is_minted_refuses_the_key(
    monkeypatch, owner, organization, project, kind
):
    held = HeldMint(monkeypatch)
    client = user_client(owner)
    body = {
        "name": "Deploys",
        "permissions": ["analysis:read"],
        "expiresAt": iso(timezone.now() + timedelta(days=365)),
    }
    minting = held.call(lambda: client.post(collection_url(kind, project), body, format="json"))

    set_policy(organization, owner, 30)
    response = held.let_go(minting)

    assert response.status_code == 400
    assert list(error_fields(response)) == ["expiresAt"]
    assert "within 30 days" in error_fields(response)["expiresAt"][0]
    assert not ApiKey.objects.exists()
    assert not AuditEvent.objects.filter(action="key.minted").exists()
    assert not Event.objects.exists()


@pytest.mark.parametrize("kind", SECRET_KINDS, ids=SECRET_IDS)
def test_a_policy_set_while_a_key_is_rolled_refuses_the_successor(
    monkeypatch, owner, organization, project, kind
):
    old, _plaintext = make_key(kind, project=project, organization=organization)
    held = HeldMint(monkeypatch)
    client = user_client(owner)
    url = key_url(kind, project, old, "roll")
    rolling = held.call(lambda: client.post(url, {"graceSeconds": 60}, format="json"))

    set_policy(organization, owner, 30)
    response = held.let_go(rolling)

    assert response.status_code == 400
    assert list(error_fields(response)) == ["expiresAt"]
    assert "within 30 days: give an expiry" in error_fields(response)["expiresAt"][0]
    assert list(ApiKey.objects.all()) == [old]
    old.refresh_from_db()
    assert old.expires_at is None and old.revoked_at is None
    assert not AuditEvent.objects.filter(action="key.rolled").exists()
