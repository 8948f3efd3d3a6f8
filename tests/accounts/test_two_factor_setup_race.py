"""Two two-factor set-ups of one user at once (a double click, two tabs) take turns.

Found by a race audit: each read no device under its lock (there was no row to lock),
both inserted one, and the second insert's IntegrityError was a 503 "database
unavailable". The first set-up is held inside its transaction; the second must wait for
it, then replaces its secret, as starting again does.
"""

from __future__ import annotations

import pytest
from django.db import connection

from apps.accounts import twofactor
from apps.accounts.models import TotpDevice
from tests.races import Call, race

pytestmark = pytest.mark.django_db(transaction=True)


def inserts_the_device(sql: str) -> bool:
    return sql.startswith('INSERT INTO "accounts_totpdevice"')


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's row locks")
def test_two_set_ups_at_once_take_turns_and_the_second_secret_holds(owner):
    first = Call(lambda: twofactor.start_setup(user=owner), inserts_the_device)
    second = Call(lambda: twofactor.start_setup(user=owner))

    race(first, second, second_waits=True)

    assert first.error is None and second.error is None, (first.error, second.error)
    device = TotpDevice.objects.get(user=owner)
    assert device.confirmed_at is None
    assert twofactor.decrypt_secret(device.encrypted_secret) == second.result.secret
