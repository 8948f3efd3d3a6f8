"""An account deletion forgets the account's address in the events about it as a member
(`forget_account`) through an index of those events, not a scan of every tenant's: under
the deletion's locks, the scan took 60 to 150 ms a statement at 200,000 events (twice)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.audit.models import AuditEvent
from apps.audit.services import Action, forget_account
from tests.factories import OrganizationFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's planner")
def test_the_events_about_a_member_are_found_through_their_index():
    organization, user = OrganizationFactory(), UserFactory()
    AuditEvent.objects.create(
        organization=organization,
        action=Action.MEMBER_ADDED,
        actor_type="system",
        target_type="user",
        target_id=str(user.pk),
        target_label=user.email,
    )
    with CaptureQueriesContext(connection) as statements:
        assert forget_account(user.pk) == 1
    about = [q["sql"] for q in statements if '"target_id"' in q["sql"]]
    assert len(about) == 2, about
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # until the test's transaction ends
        plans = []
        for statement in about:
            cursor.execute(f"EXPLAIN {statement}")
            plans.append("\n".join(row[0] for row in cursor.fetchall()))

    assert all("audit_user_target" in plan for plan in plans), plans
