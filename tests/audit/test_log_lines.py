"""Every audit event is also one `sigsentry.audit` log line once its change commits: the
copy of the audit log outside the database that a restore to an earlier point needs (a
restore drill found nothing outside PostgreSQL naming the keys revoked since a backup)."""

from __future__ import annotations

import contextlib
import json

import pytest
from django.db import transaction

from apps.apikeys.keyformat import KeyKind
from apps.apikeys.leaks import report_leaked_keys
from apps.apikeys.services import revoke_key, roll_key
from apps.audit.models import AuditEvent
from core.logging import JsonFormatter
from tests.factories import make_key

pytestmark = pytest.mark.django_db


def audit_lines(caplog) -> list[dict]:
    formatter = JsonFormatter()
    return [
        json.loads(formatter.format(record))
        for record in caplog.records
        if record.name == "sigsentry.audit"
    ]


@pytest.fixture
def logging_commits(caplog, django_capture_on_commit_callbacks):
    """A block whose committed changes run their on-commit steps, the `sigsentry.audit`
    lines written in it caught (those before it, of the test's setup, dropped)."""

    @contextlib.contextmanager
    def block():
        caplog.clear()
        with (
            caplog.at_level("INFO", logger="sigsentry.audit"),
            django_capture_on_commit_callbacks(execute=True),
        ):
            yield

    return block


def test_a_revocation_is_logged_with_the_key_once_committed(
    project, owner, caplog, logging_commits
):
    api_key, plaintext = make_key(KeyKind.SECRET, project=project, name="Nightly export")

    with logging_commits():
        revoke_key(actor=owner, api_key=api_key)

    [line] = audit_lines(caplog)
    event = AuditEvent.objects.get(action="key.revoked")
    assert line["message"] == "audit key.revoked"
    assert {k: line[k] for k in ("event_id", "action", "organization_id", "target_id")} == {
        "event_id": str(event.id),
        "action": "key.revoked",
        "organization_id": str(project.organization_id),
        "target_id": str(api_key.id),
    }
    assert (line["key_prefix"], line["actor_type"], line["actor_id"]) == (
        api_key.prefix,
        "user",
        str(owner.pk),
    )
    text = json.dumps(line)
    for never in (plaintext, api_key.digest, "Nightly export", owner.email):
        assert never not in text


def test_nothing_is_logged_for_a_change_rolled_back(project, owner, caplog, logging_commits):
    api_key, _ = make_key(KeyKind.SECRET, project=project)

    with logging_commits(), pytest.raises(RuntimeError), transaction.atomic():
        revoke_key(actor=owner, api_key=api_key)
        raise RuntimeError("rolled back")

    assert audit_lines(caplog) == []
    assert not AuditEvent.objects.filter(action="key.revoked").exists()


def test_a_leak_report_logs_each_key_it_revoked_or_flagged(project, caplog, logging_commits):
    secret, secret_text = make_key(KeyKind.SECRET, project=project)
    sdk, sdk_text = make_key(KeyKind.PUBLIC, project=project)

    with logging_commits():
        report_leaked_keys(candidates=[secret_text, sdk_text])

    lines = audit_lines(caplog)
    assert sorted((line["action"], line["target_id"]) for line in lines) == sorted(
        [("key.revoked_by_leak_report", str(secret.id)), ("key.leak_reported", str(sdk.id))]
    )
    assert secret_text not in json.dumps(lines) and sdk_text not in json.dumps(lines)


def test_a_roll_logs_the_key_it_replaces(project, owner, caplog, logging_commits):
    """The predecessor comes back to life when a restore drops the roll: its line names it."""
    old, old_text = make_key(KeyKind.SECRET, project=project)

    with logging_commits():
        minted = roll_key(actor=owner, api_key=old, grace_seconds=3600)

    [line] = audit_lines(caplog)
    assert (line["action"], line["target_id"], line["key_prefix"]) == (
        "key.rolled",
        str(minted.api_key.id),
        minted.api_key.prefix,
    )
    assert (line["replaced_key_id"], line["replaced_key_prefix"]) == (str(old.id), old.prefix)
    text = json.dumps(line)
    for never in (old_text, old.digest, minted.key, minted.api_key.digest):
        assert never not in text


def test_a_mint_that_replaces_nothing_names_no_replaced_key(project, caplog, logging_commits):
    with logging_commits():
        make_key(KeyKind.SECRET, project=project)

    [line] = audit_lines(caplog)
    assert "replaced_key_id" not in line
