"""`manage.py reapply_after_restore`: after a restore to an earlier point, what the restore
undid is re-applied from the `sigsentry.audit` log lines (a backup/restore audit: keys
revoked after the backup authenticated again, and the README's steps were a grep by hand).

The log is the real one: the lines the services write, formatted as the production LOGGING
formats them, into a file. The restore is simulated in the database: what changed after the
backup's moment is put back as it was (revocations undone, the roll's successor and the keys
minted since deleted, the deleted webhook back, the audit events since gone)."""

from __future__ import annotations

import logging
import time
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.accounts.models import AuthSession
from apps.accounts.services import change_password, start_session
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.leaks import report_leaked_keys
from apps.apikeys.models import ApiKey
from apps.apikeys.services import revoke_key, roll_key, update_key
from apps.audit.models import AuditEvent
from apps.webhooks.models import Webhook
from apps.webhooks.services import delete_webhook
from core.logging import JsonFormatter
from tests.conftest import bearer
from tests.factories import UserFactory, make_key, make_webhook

pytestmark = pytest.mark.django_db


@pytest.fixture
def audit_log(tmp_path):
    """The `sigsentry.audit` lines written meanwhile, into a file, as production writes them."""
    path = tmp_path / "sigsentry.log"
    handler = logging.FileHandler(path)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("sigsentry.audit")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield path
    logger.removeHandler(handler)
    logger.setLevel(level)
    handler.close()


def status_of(api_client, plaintext: str) -> tuple[int, str | None]:
    response = api_client.get("/v1/me", **bearer(plaintext))
    code = response.json().get("error", {}).get("code") if response.status_code >= 400 else None
    return response.status_code, code


def reapply(*args: str) -> str:
    out = StringIO()
    call_command("reapply_after_restore", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def restored(project, owner, audit_log, django_capture_on_commit_callbacks):
    """Keys and a webhook made before the backup's moment, changed after it, then restored
    to how they were at that moment. (the keys' plaintexts, the webhook's id, the moment)"""
    organization = project.organization
    with django_capture_on_commit_callbacks(execute=True):
        revoked, revoked_text = make_key(KeyKind.SECRET, project=project, name="Revoked")
        leaked, leaked_text = make_key(KeyKind.SECRET, project=project, name="Leaked")
        rolled, rolled_text = make_key(KeyKind.SECRET, project=project, name="Rolled")
        untouched, untouched_text = make_key(KeyKind.SECRET, project=project, name="Untouched")
        webhook = make_webhook(organization, owner).webhook
    time.sleep(0.01)  # the lines' times have milliseconds
    backup_at = timezone.now()
    time.sleep(0.01)
    saved_webhook = Webhook.objects.get(pk=webhook.pk)
    saved_password = owner.password

    with django_capture_on_commit_callbacks(execute=True):
        revoke_key(actor=owner, api_key=revoked)
        report_leaked_keys(candidates=[leaked_text])
        roll_key(actor=owner, api_key=rolled, grace_seconds=7 * 86400)
        make_key(KeyKind.SECRET, project=project, name="Minted since")
        delete_webhook(actor=owner, webhook=webhook)
        update_key(  # a guardrail tightened: the restore loosens it again
            actor=owner,
            api_key=untouched,
            changes={"rateLimit": {"requests": 5, "perSeconds": 60}},
        )
        change_password(user=owner, new_password="a-password-changed-since")

    # The restore: the database as it was at `backup_at`.
    ApiKey.objects.filter(created_at__gte=backup_at).delete()
    ApiKey.objects.filter(pk__in=[revoked.pk, leaked.pk, rolled.pk]).update(
        revoked_at=None, revoked_by=None, revoked_reason="", expires_at=None
    )
    ApiKey.objects.filter(pk=untouched.pk).update(rate_limit_requests=None, rate_limit_seconds=None)
    saved_webhook.save(force_insert=True)
    type(owner).objects.filter(pk=owner.pk).update(password=saved_password)
    AuditEvent.objects.filter(created_at__gte=backup_at).delete()
    texts = {"revoked": revoked_text, "leaked": leaked_text, "rolled": rolled_text}
    return texts | {"untouched": untouched_text}, webhook.pk, backup_at


def test_keys_revoked_since_the_backup_are_refused_again_and_the_webhook_is_gone(
    api_client, owner, project, restored, audit_log
):
    texts, webhook_id, backup_at = restored
    # the restore brought them back: they authenticate
    assert {name: status_of(api_client, text)[0] for name, text in texts.items()} == dict.fromkeys(
        texts, 200
    )
    with audit_log.open("a") as log:  # other lines of the same log are skipped
        log.write('{"logger": "sigsentry.access", "status": 200}\nnot json at all\n')

    out = reapply("--since", backup_at.isoformat(), str(audit_log))

    for name in ("revoked", "leaked", "rolled"):
        assert status_of(api_client, texts[name]) == (401, "KEY_REVOKED"), name
    assert status_of(api_client, texts["untouched"])[0] == 200
    assert not Webhook.objects.filter(pk=webhook_id).exists()
    events = AuditEvent.objects.filter(created_at__gte=backup_at)
    assert sorted((e.action, e.actor_type, e.details.get("reason")) for e in events) == sorted(
        [
            ("key.revoked", "system", "revoked_again_after_restore"),
            ("key.revoked", "system", "revoked_again_after_restore"),
            ("key.revoked", "system", "rolled_before_restore"),
            ("webhook.deleted", "system", "deleted_again_after_restore"),
        ]
    )
    # listed for the operator, not changed
    assert f"User {owner.email} ({owner.pk}): undone user.password_changed" in out
    organization = project.organization
    assert f"Organization {organization.name} ({organization.pk}): keys minted or rolled" in out
    untouched = ApiKey.objects.get(name="Untouched")
    assert f"Key {untouched.prefix}… ({untouched.pk}) of organization" in out
    assert "name or guardrails changed since are undone, ask its organization" in out
    assert "re-applied 4 change(s)" in out

    again = reapply("--since", backup_at.isoformat(), str(audit_log))

    assert "re-applied 0 change(s)" in again
    assert AuditEvent.objects.filter(created_at__gte=backup_at).count() == 4
    assert f"User {owner.email}" in again  # still listed: it needs a person


def test_an_operators_changes_to_accounts_since_the_backup_are_listed(
    owner, audit_log, django_capture_on_commit_callbacks
):
    """An admin audit: a restore brought back an account an operator had deactivated, the
    rights a superuser had taken, an address and sessions changed, and nothing said so: an
    account in no organization (an operator's) left no line at all."""
    former = UserFactory(email="former@sigsentry.dev", is_staff=True, is_superuser=True)
    root = Client()
    root.force_login(UserFactory(email="root@sigsentry.dev", is_staff=True, is_superuser=True))
    start_session(owner)
    backup_at = timezone.now()
    time.sleep(0.01)

    with django_capture_on_commit_callbacks(execute=True):
        change = reverse("admin:accounts_user_change", args=[former.pk])
        root.post(change, {"email": former.email, "is_active": "on"})  # no staff, no superuser
        root.post(
            reverse("admin:accounts_user_changelist"),
            {"action": "deactivate_users", "_selected_action": [former.pk]},
        )
        change = reverse("admin:accounts_user_change", args=[owner.pk])
        root.post(change, {"email": "moved@example.com", "is_active": "on"})
        root.post(
            reverse("admin:accounts_authsession_changelist"),
            {"action": "end_sessions", "_selected_action": [AuthSession.objects.get().pk]},
        )

    out = reapply("--since", backup_at.isoformat(), str(audit_log))

    assert (
        f"User former@sigsentry.dev ({former.pk}): undone user.deactivated, user.rights_changed"
        in out
    )
    assert (
        f"User moved@example.com ({owner.pk}): undone user.email_changed, user.sessions_ended"
        in out
    )


def test_a_dry_run_says_what_it_would_do_and_changes_nothing(api_client, restored, audit_log):
    texts, webhook_id, backup_at = restored

    out = reapply("--since", backup_at.isoformat(), "--dry-run", str(audit_log))

    assert out.count("Would revoke key") == 2
    assert out.count("Would end the grace of rolled key") == 1
    assert f"Would delete webhook {webhook_id}" in out
    assert "would re-apply 4 change(s)" in out
    assert all(status_of(api_client, text)[0] == 200 for text in texts.values())
    assert Webhook.objects.filter(pk=webhook_id).exists()
    assert not AuditEvent.objects.filter(created_at__gte=backup_at).exists()


def test_lines_before_since_are_left_alone(api_client, restored, audit_log):
    texts, webhook_id, _ = restored

    out = reapply("--since", timezone.now().isoformat(), str(audit_log))

    assert "re-applied 0 change(s)" in out
    assert status_of(api_client, texts["revoked"])[0] == 200
    assert Webhook.objects.filter(pk=webhook_id).exists()


def test_a_log_without_audit_lines_is_refused(tmp_path):
    log = tmp_path / "other.log"
    log.write_text('{"logger": "sigsentry.access", "status": 200}\n')

    with pytest.raises(CommandError, match=r"No sigsentry\.audit line"):
        reapply("--since", "2026-12-07T08:00:00Z", str(log))


def test_an_unreadable_log_is_one_error(tmp_path):
    with pytest.raises(CommandError, match="Cannot read the log"):
        reapply("--since", "2026-12-07T08:00:00Z", str(tmp_path / "missing.log"))


def test_a_moment_that_is_not_iso_8601_is_refused(tmp_path):
    with pytest.raises(CommandError, match="not an ISO 8601 moment"):
        reapply("--since", "yesterday", str(tmp_path / "any.log"))


def test_quiet_runs_still_print_what_needs_a_person_and_a_dry_runs_plan(
    api_client, restored, audit_log, owner
):
    """`-v 0` silences what was done, as for cron; not what only a person can do, nor a dry
    run's plan, which is all a dry run gives (the last read of the restore work: both were
    hidden with the rest)."""
    texts, webhook_id, backup_at = restored

    planned = reapply("--since", backup_at.isoformat(), "--dry-run", "-v", "0", str(audit_log))
    done = reapply("--since", backup_at.isoformat(), "-v", "0", str(audit_log))

    assert planned.count("Would revoke key") == 2
    assert f"Would delete webhook {webhook_id}" in planned
    assert f"User {owner.email} ({owner.pk}): undone user.password_changed" in planned
    assert f"User {owner.email} ({owner.pk}): undone user.password_changed" in done
    assert "Revoked" not in done and "re-applied" not in done
    assert status_of(api_client, texts["untouched"])[0] == 200
