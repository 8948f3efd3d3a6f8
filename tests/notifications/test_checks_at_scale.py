"""The notification checks' statements at a large tenant's volume (a scale audit)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.notifications import checks
from apps.notifications.models import Reminder, ReminderKind

pytestmark = pytest.mark.django_db


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
