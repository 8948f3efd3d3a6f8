"""Secrets at rest: after a webhook and keys lived their whole life through the API, no
webhook secret, no key and no key digest is in any column of any table, except the
digests in the key table's own `digest` column.

tests/apikeys/test_auth_secrecy.py scans every table for keys and session tokens
after every /v1 endpoint was called with them; this adds what it does not cover:
the webhook signing secret (stored only as a Fernet token, `secret_ciphertext`,
so no column is exempt for it), key digests outside their column (an audit event
or webhook event naming one would let anyone who reads the audit log match a key
found elsewhere), and the leak report of a secret key, a revoke and the deliveries.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from apps.apikeys import keyformat
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from apps.audit.models import AuditEvent
from apps.webhooks import crypto
from apps.webhooks import delivery as deliveries
from apps.webhooks.models import Delivery, DeliveryStatus, EventType, Webhook
from tests.apikeys.test_auth_secrecy import _hidden_parts
from tests.factories import PASSWORD, UserFactory
from tests.orgs.helpers import bearer_client, collection_url, key_url, user_client
from tests.outbound import Receiver, verify_signature
from tests.tasks import run_ready_tasks

pytestmark = pytest.mark.django_db

#: The one column a key digest may be in: the key table's indexed lookup column.
DIGEST_COLUMN = (ApiKey._meta.db_table, ApiKey._meta.get_field("digest").column)


@pytest.fixture
def receiver():
    endpoint = Receiver()
    yield endpoint
    endpoint.stop()


def database_cells() -> list[tuple[str, str, str]]:
    """(table, column, text) of every cell of every table; bytes decoded as UTF-8."""
    cells = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            columns = [column[0] for column in cursor.description]
            for row in cursor.fetchall():
                for column, cell in zip(columns, row, strict=True):
                    if isinstance(cell, bytes | memoryview):
                        cell = bytes(cell).decode("utf-8", "replace")
                    cells.append((table, column, str(cell)))
    return cells


def mint(client, kind: KeyKind, project) -> tuple[str, str]:
    body = {"name": f"{kind.name.lower()} key"}
    if kind is not KeyKind.PUBLIC:
        body["permissions"] = ["analysis:read"]
    response = client.post(collection_url(kind, project), body, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"], response.json()["key"]


def test_no_webhook_secret_key_or_digest_is_stored_outside_the_digest_column(
    owner, organization, project, settings, receiver
):
    settings.WEBHOOKS_ALLOW_PRIVATE = True  # the receiver is on 127.0.0.1
    client = user_client(owner)
    created = client.post(
        f"/v1/organizations/{organization.id}/webhooks",
        {"url": receiver.url, "events": list(EventType.values)},
        format="json",
    )
    assert created.status_code == 201, created.content
    webhook_secret = created.json()["secret"]

    minted = {kind: mint(client, kind, project) for kind in KeyKind}
    for _id, key in minted.values():
        assert bearer_client(key).get("/v1/me").status_code == 200
    (sdk_id, sdk_key), (_secret_id, secret_key), (org_id, org_key) = (
        minted[KeyKind.PUBLIC],
        minted[KeyKind.SECRET],
        minted[KeyKind.ORGANIZATION],
    )
    report = APIClient().post("/v1/leaked-keys", {"keys": [secret_key, sdk_key]}, format="json")
    assert report.status_code == 202
    run_ready_tasks()  # the worker makes and sends a report's deliveries
    rolled = client.post(
        key_url(KeyKind.ORGANIZATION, project, org_id, "roll"), {"graceSeconds": 60}, format="json"
    )
    assert rolled.status_code == 201, rolled.content
    successor = rolled.json()["key"]
    assert bearer_client(successor).get("/v1/me").status_code == 200
    assert client.post(key_url(KeyKind.PUBLIC, project, sdk_id, "revoke")).status_code == 200
    waiting = Delivery.objects.exclude(status=DeliveryStatus.DELIVERED)
    for delivery_id in waiting.values_list("pk", flat=True):
        assert deliveries.attempt_delivery(str(delivery_id)) == "delivered"

    # The story happened: revoked by the report, flagged, rolled, revoked, delivered, signed.
    assert ApiKey.objects.filter(revoked_reason="leak_report").count() == 1
    assert AuditEvent.objects.filter(action="key.leak_reported").exists()
    assert ApiKey.objects.filter(revoked_at__isnull=False).count() == 2
    assert len(receiver.requests) == Delivery.objects.count() >= 6
    assert verify_signature(
        receiver.requests[0].headers["SigSentry-Signature"],
        receiver.requests[0].body,
        webhook_secret,
    )
    # The row holds the secret only encrypted: its column needs no exemption.
    assert crypto.decrypt_secret(Webhook.objects.get().secret_ciphertext) == webhook_secret

    keys = [sdk_key, secret_key, org_key, successor]
    secrets_ = [webhook_secret, webhook_secret.removeprefix("whsec_")]
    secrets_ += keys + [part for key in keys for part in _hidden_parts(key)]
    digests = [keyformat.digest(key) for key in keys]
    assert sorted(digests) == sorted(ApiKey.objects.values_list("digest", flat=True))
    cells = database_cells()
    assert {table for table, _column, _text in cells} >= {
        AuditEvent._meta.db_table,
        Webhook._meta.db_table,
        Delivery._meta.db_table,
    }  # the scan read the tables where a careless write would land
    assert sorted(text for *where, text in cells if tuple(where) == DIGEST_COLUMN) == sorted(
        digests
    )  # and the key table, where the digests belong

    leaks = [
        (table, column, secret[:12])
        for table, column, text in cells
        for secret in secrets_
        if secret in text
    ]
    leaks += [
        (table, column, digest[:12])
        for table, column, text in cells
        if (table, column) != DIGEST_COLUMN
        for digest in digests
        if digest[:32] in text  # half a digest (128 bits) still names the key
    ]
    assert leaks == []


def test_an_operators_admin_session_is_not_in_the_database(client):
    """The admin's login is a Django session: its id alone logs in, so the database (and
    its backups) must not hold it, as it holds no dashboard session token."""
    staff = UserFactory(is_staff=True, is_superuser=True)
    response = client.post(
        "/admin/login/", {"username": staff.email, "password": PASSWORD, "next": "/admin/"}
    )
    assert response.status_code == 302
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    assert int(cookie["max-age"]) <= 12 * 3600  # a copy of it is good for a working day

    assert not [cell for cell in database_cells() if cookie.value in cell[2]]
    elsewhere = Client()
    elsewhere.cookies[settings.SESSION_COOKIE_NAME] = cookie.value
    assert elsewhere.get("/admin/apikeys/apikey/").status_code == 200  # it is the session
