"""The notification checks' statements at a large tenant's volume (a scale audit)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.notifications import checks
from apps.notifications.models import Reminder, ReminderKind
from apps.webhooks.models import Event, EventType
from tests.factories import bulk_secret_keys

pytestmark = pytest.mark.django_db


def _leak_events(keys, event_type: str, now) -> list[Event]:
    return Event.objects.bulk_create(
        Event(
            organization_id=key.organization_id,
            type=event_type,
            data={"key": {"id": str(key.id)}},
            created_at=now - timedelta(minutes=5),
        )
        for key in keys
    )


def test_a_leak_check_with_every_reminder_written_reads_no_event(project):
    now = timezone.now()
    keys = bulk_secret_keys(project, 30)
    _leak_events(keys[:20], EventType.KEY_LEAK_REPORTED, now)
    _leak_events(keys[20:], EventType.KEY_REVOKED_BY_LEAK_REPORT, now)
    first = checks.Report()
    checks.find_urgent(now, first)
    assert dict(first.created) == {
        ReminderKind.KEY_LEAK_REPORTED: 20,
        ReminderKind.KEY_REVOKED_BY_LEAK_REPORT: 10,
    }

    assert list(checks.leak_reports(now)) == []
    with CaptureQueriesContext(connection) as queries:
        again = checks.Report()
        checks.find_urgent(now, again)
    assert dict(again.created) == {}
    # The leak events (none come back) and the disabled webhooks: no key, no dedupe lookup.
    assert len(queries) == 2, [q["sql"] for q in queries]


def test_the_leak_check_reads_only_the_events_without_their_reminder(project):
    now = timezone.now()
    told, untold_flagged, untold_revoked = bulk_secret_keys(project, 3)
    [old] = _leak_events([told], EventType.KEY_LEAK_REPORTED, now)
    checks.find_urgent(now, checks.Report())
    [flagged] = _leak_events([untold_flagged], EventType.KEY_LEAK_REPORTED, now)
    [revoked] = _leak_events([untold_revoked], EventType.KEY_REVOKED_BY_LEAK_REPORT, now)
    # A reminder of the other kind for the same event id is not this event's reminder.
    Reminder.objects.create(
        kind=ReminderKind.KEY_REVOKED_BY_LEAK_REPORT,
        dedupe_key=f"{ReminderKind.KEY_REVOKED_BY_LEAK_REPORT}:{flagged.id}",
        organization=project.organization,
    )

    found = {(f.dedupe_key, f.api_key.id) for f in checks.leak_reports(now)}

    assert Reminder.objects.filter(dedupe_key=f"{ReminderKind.KEY_LEAK_REPORTED}:{old.id}").exists()
    assert found == {
        (f"{ReminderKind.KEY_LEAK_REPORTED}:{flagged.id}", untold_flagged.id),
        (f"{ReminderKind.KEY_REVOKED_BY_LEAK_REPORT}:{revoked.id}", untold_revoked.id),
    }


def test_an_email_claim_updates_the_rows_it_read_by_id_not_by_a_sorted_subquery(
    project, monkeypatch
):
    """After a burst of reminders, stale statistics made PostgreSQL re-run the claim's
    `ORDER BY … LIMIT` subquery per row of its UPDATE (10,056 reminders: 15.9 s)."""
    monkeypatch.setattr(checks, "EMAIL_PER_MESSAGE", 3)
    now = timezone.now()
    Reminder.objects.bulk_create(
        Reminder(
            kind=ReminderKind.KEY_UNUSED,
            dedupe_key=f"scale:{i}",
            organization=project.organization,
            created_at=now - timedelta(minutes=10 - i),
            next_email_at=now,
        )
        for i in range(5)
    )

    with CaptureQueriesContext(connection) as queries:
        [(claim, held)] = checks._claim_messages(now)

    updates = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith("UPDATE")]
    assert len(updates) == 1
    assert "LIMIT" not in updates[0].upper() and "SELECT" not in updates[0].upper()
    # The oldest three, as before, held by this claim until the lease ends.
    assert sorted(r.dedupe_key for r in held) == ["scale:0", "scale:1", "scale:2"]
    assert set(Reminder.objects.filter(claim=claim).values_list("locked_until", flat=True)) == {
        now + checks.EMAIL_LEASE
    }
    # A second worker at the same moment finds nothing left of those: only the other two.
    [(_, rest)] = checks._claim_messages(now)
    assert sorted(r.dedupe_key for r in rest) == ["scale:3", "scale:4"]
    assert checks._claim_messages(now) == []
