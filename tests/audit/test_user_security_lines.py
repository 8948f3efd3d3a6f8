"""A user's own security changes are one `sigsentry.audit` line each once they commit: a
restore to an earlier point undoes them (a password changed, two-factor turned on, a
recovery code spent, other sessions logged out), and a backup/restore audit found nothing
outside PostgreSQL that named those users. The action and the user's id only."""

from __future__ import annotations

import json
import time

import pyotp
import pytest
from django.db import transaction

from apps.accounts import services, twofactor
from apps.accounts.admin import PasswordChangeEndsSessionsForm
from apps.accounts.models import AuthSession
from apps.accounts.password_reset import confirm_password_reset, make_reset_token
from core.errors import InvalidCredentials
from tests.audit.test_log_lines import audit_lines
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a-new-password-for-tests"


def turn_on_two_factor(user) -> list[str]:
    """Two-factor on through the service, at the start of a step; its recovery codes."""
    secret = twofactor.start_setup(user=user).secret
    if time.time() % 30 > 26:  # the code must still be the step's when `enable` checks it
        time.sleep(30 - time.time() % 30 + 0.05)
    return twofactor.enable(user=user, code=pyotp.TOTP(secret).now())


def change_own_password(user, codes):
    services.change_own_password(user=user, current_password=PASSWORD, new_password=NEW_PASSWORD)


def reset_password(user, codes):
    confirm_password_reset(token=make_reset_token(user), password=NEW_PASSWORD)


def operator_sets_password(user, codes):
    form = PasswordChangeEndsSessionsForm(
        user, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    )
    assert form.is_valid(), form.errors
    form.save()


def disable_two_factor(user, codes):
    twofactor.disable(user=user, password=PASSWORD)


def operator_resets_two_factor(user, codes):
    twofactor.reset_for_operator(user=user)


def use_recovery_code(user, codes):
    twofactor.check_second_factor(user=user, code=codes[0])


def log_out_everywhere_else(user, codes):
    services.start_session(user)
    services.start_session(user)
    keep = AuthSession.objects.filter(user=user).first()
    assert services.end_other_sessions(user=user, keep=keep) == 1


@pytest.mark.parametrize(
    ("change", "two_factor_before", "action"),
    [
        (change_own_password, False, "user.password_changed"),
        (reset_password, False, "user.password_reset"),
        (operator_sets_password, False, "user.password_set"),
        (lambda user, codes: turn_on_two_factor(user), False, "user.two_factor_enabled"),
        (disable_two_factor, True, "user.two_factor_disabled"),
        (operator_resets_two_factor, True, "user.two_factor_reset"),
        (use_recovery_code, True, "user.recovery_code_used"),
        (log_out_everywhere_else, False, "user.sessions_ended"),
    ],
)
def test_each_security_change_of_a_user_is_one_line_once_committed(
    owner, caplog, django_capture_on_commit_callbacks, change, two_factor_before, action
):
    codes = []
    if two_factor_before:
        with django_capture_on_commit_callbacks(execute=True):
            codes = turn_on_two_factor(owner)
    caplog.clear()

    with (
        caplog.at_level("INFO", logger="sigsentry.audit"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        change(owner, codes)

    [line] = audit_lines(caplog)
    assert (line["message"], line["action"], line["user_id"]) == (
        f"audit {action}",
        action,
        str(owner.pk),
    )
    text = json.dumps(line)
    for never in (owner.email, PASSWORD, NEW_PASSWORD, *codes):
        assert never not in text


def test_a_refused_change_is_not_logged(owner, caplog, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        turn_on_two_factor(owner)
    caplog.clear()

    with (
        caplog.at_level("INFO", logger="sigsentry.audit"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        with pytest.raises(InvalidCredentials):
            twofactor.check_second_factor(user=owner, code="aaaa-bbbb-cccc-dddd")
        with pytest.raises(InvalidCredentials):
            twofactor.disable(user=owner, password="not-the-password")

    assert audit_lines(caplog) == []


def test_a_change_rolled_back_is_not_logged(owner, caplog, django_capture_on_commit_callbacks):
    with (
        caplog.at_level("INFO", logger="sigsentry.audit"),
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        services.change_password(user=owner, new_password=NEW_PASSWORD)
        raise RuntimeError("rolled back")

    assert audit_lines(caplog) == []
