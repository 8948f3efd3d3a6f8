"""`manage.py changepassword` sets a password as the admin's "set password" page does (found
by an audit: Django's own saved the whole user row read before its prompts, and told no one).

There is no terminal in tests: the prompts are answered by patching `getpass.getpass`, which
Django's command reads them with."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator

import pytest
from django.core.management import CommandError, call_command, get_commands
from django.db import connection

from apps.accounts import services
from apps.accounts.models import AuthSession, User
from apps.audit.models import AuditEvent
from apps.audit.services import Action
from tests.audit.test_log_lines import audit_lines
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "an-operator-set-passphrase-7"


def typed(monkeypatch, *answers: str, meanwhile: Callable[[], None] | None = None) -> None:
    """The operator types `answers` at the prompts; `meanwhile` runs before the last one is
    answered (another writer while the command waits for its operator)."""
    left: Iterator[str] = iter(answers)
    count = len(answers)

    def getpass(prompt: str = "Password: ") -> str:
        nonlocal count
        count -= 1
        if count == 0 and meanwhile is not None:
            meanwhile()
        return next(left)

    monkeypatch.setattr("getpass.getpass", getpass)


def change_password(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("changepassword", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_changepassword_is_the_accounts_command():
    assert get_commands()["changepassword"] == "apps.accounts.commands"


def test_changepassword_ends_sessions_mails_and_audits_as_the_admin_does(
    monkeypatch, member, organization, mailbox, caplog, django_capture_on_commit_callbacks
):
    services.start_session(member)
    typed(monkeypatch, NEW_PASSWORD, NEW_PASSWORD)

    with (
        caplog.at_level("INFO", logger="sigsentry.audit"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        out, _ = change_password(member.email.upper())

    assert f"Password changed successfully for user '{member.email}'" in out
    member.refresh_from_db()
    assert member.check_password(NEW_PASSWORD)
    assert AuthSession.objects.get(user=member).end_reason == AuthSession.EndReason.PASSWORD_CHANGED
    [notice] = mailbox.wait_for(member.email)
    assert notice.subject == "Your SigSentry password was changed"
    [event] = AuditEvent.objects.filter(action=Action.MEMBER_PASSWORD_SET)
    assert (event.organization_id, event.actor_user_id, event.target_id) == (
        organization.id,
        None,
        str(member.pk),
    )
    actions = [line["action"] for line in audit_lines(caplog)]
    assert actions == ["member.password_set", "user.password_set"]


def test_a_deactivation_or_new_address_while_it_prompts_is_kept(monkeypatch, member, mailbox):
    """Django's command saved the row it had read before its prompts: an account an operator
    deactivated meanwhile was active again, and its old address written back."""

    def meanwhile() -> None:
        services.deactivate_user(user=User.objects.get(pk=member.pk))
        User.objects.filter(pk=member.pk).update(email="moved@example.com")

    typed(monkeypatch, NEW_PASSWORD, NEW_PASSWORD, meanwhile=meanwhile)

    change_password(member.email)

    stored = User.objects.get(pk=member.pk)
    assert (stored.is_active, stored.email) == (False, "moved@example.com")
    assert stored.check_password(NEW_PASSWORD)
    assert [mail.to for mail in mailbox.wait_for("moved@example.com")] == [("moved@example.com",)]


def test_a_password_the_rules_refuse_is_asked_again_then_given_up(monkeypatch, member, mailbox):
    typed(monkeypatch, "short", "short", NEW_PASSWORD, "other", "password", "password")

    with pytest.raises(CommandError, match="after 3 attempts"):
        change_password(member.email)

    member.refresh_from_db()
    assert member.check_password(PASSWORD)
    assert not AuditEvent.objects.filter(action=Action.MEMBER_PASSWORD_SET).exists()
    assert mailbox.messages() == []


def test_a_refused_password_says_why_and_the_next_try_is_taken(monkeypatch, member):
    typed(monkeypatch, "short", "short", NEW_PASSWORD, NEW_PASSWORD)

    out, err = change_password(member.email)

    assert "too short" in err
    assert "Password changed successfully" in out
    assert User.objects.get(pk=member.pk).check_password(NEW_PASSWORD)


def test_an_empty_password_aborts_and_changes_nothing(monkeypatch, member, mailbox):
    typed(monkeypatch, "")

    with pytest.raises(CommandError, match="aborted"):
        change_password(member.email)

    assert User.objects.get(pk=member.pk).check_password(PASSWORD)
    assert mailbox.messages() == []


def test_an_unknown_user_is_an_error(db):
    with pytest.raises(CommandError, match="does not exist"):
        change_password("nobody@example.com")


def test_the_database_option_is_djangos(monkeypatch, member):
    typed(monkeypatch, NEW_PASSWORD, NEW_PASSWORD)

    change_password(member.email, "--database", connection.alias)

    assert User.objects.get(pk=member.pk).check_password(NEW_PASSWORD)
