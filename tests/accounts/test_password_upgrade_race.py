"""A log-in that upgrades the stored hash never writes over a password changed meanwhile.

Found by a race audit: Django re-hashes a right password stored with an older hasher at
log-in (`User.check_password`), and the upgrade saved it unconditionally. A change or a
reset committed between the log-in's read of the user and that save was undone: the old
password worked again, the new one did not, and the log-in had a session of it.

The log-in is held just after it read the user; the change runs and commits; then the
log-in goes on. The tests' first hasher is MD5, so an Argon2 hash is an outdated one, as a
PBKDF2 hash is in production.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.hashers import make_password

from apps.accounts import services
from apps.accounts.models import AuthSession, User
from apps.accounts.password_reset import confirm_password_reset, make_reset_token
from core.errors import InvalidCredentials
from tests.orgs.helpers import bearer_client
from tests.races import Call, race

pytestmark = pytest.mark.django_db(transaction=True)

OLD, NEW = "the-old-passphrase-2026", "the-new-passphrase-2026"


def reads_the_user(sql: str) -> bool:
    return sql.startswith("SELECT") and 'FROM "accounts_user"' in sql


def change(user: User) -> None:
    services.change_password(user=User.objects.get(pk=user.pk), new_password=NEW)


def reset(user: User) -> None:
    confirm_password_reset(token=make_reset_token(User.objects.get(pk=user.pk)), password=NEW)


@pytest.mark.parametrize("how", [change, reset], ids=["change", "reset"])
def test_a_log_in_upgrading_the_hash_does_not_undo_a_change_made_meanwhile(owner, how):
    User.objects.filter(pk=owner.pk).update(password=make_password(OLD, hasher="argon2"))
    login = Call(lambda: services.login(email=owner.email, password=OLD), reads_the_user)
    changing = Call(lambda: how(owner))

    race(login, changing)

    assert changing.error is None
    assert isinstance(login.error, InvalidCredentials), login.result  # no session of OLD
    owner.refresh_from_db()
    assert owner.check_password(NEW) and not owner.check_password(OLD)
    assert not AuthSession.objects.filter(user=owner, ended_at__isnull=True).exists()


def test_an_upgrade_with_no_change_meanwhile_still_happens(owner):
    User.objects.filter(pk=owner.pk).update(password=make_password(OLD, hasher="argon2"))
    services.login(email=owner.email, password=OLD)
    owner.refresh_from_db()
    assert owner.password.startswith("md5$")  # upgraded to the first hasher
    assert owner.check_password(OLD)
    assert AuthSession.objects.filter(user=owner, ended_at__isnull=True).count() == 1


def test_two_log_ins_upgrading_the_same_hash_at_once_both_succeed(owner):
    """The second upgrade finds the hash already replaced, by the first's upgrade of the same
    password: checked again against it, the password is right."""
    User.objects.filter(pk=owner.pk).update(password=make_password(OLD, hasher="argon2"))
    first = Call(lambda: services.login(email=owner.email, password=OLD), reads_the_user)
    second = Call(lambda: services.login(email=owner.email, password=OLD))

    race(first, second)

    assert first.error is None and second.error is None, (first.error, second.error)
    assert AuthSession.objects.filter(user=owner, ended_at__isnull=True).count() == 2
    for pair in (first.result, second.result):
        assert bearer_client(pair.access).get("/v1/me").status_code == 200
