"""The operators' list of audit events (the admin, newest first across organizations)
reads a range of an index, not the whole table: without one, PostgreSQL sorted every
event of every tenant for each page (a scale audit: 48 ms at 100,000 events, growing with
the table), and counts them once a page."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from apps.audit.models import AuditEvent
from tests.factories import OrganizationFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's planner")
def test_the_admin_list_of_events_reads_the_time_index():
    organization = OrganizationFactory()
    AuditEvent.objects.bulk_create(
        AuditEvent(organization=organization, action="project.created", actor_type="system")
        for _ in range(101)  # past the admin's page of 100: its pages' statement
    )
    ops = Client()
    ops.force_login(UserFactory(is_staff=True, is_superuser=True))
    with CaptureQueriesContext(connection) as statements:
        assert ops.get("/admin/audit/auditevent/").status_code == 200
    [page] = [
        q["sql"]
        for q in statements
        if 'FROM "audit_auditevent"' in q["sql"] and "ORDER BY" in q["sql"] and "LIMIT" in q["sql"]
    ]
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # until the test's transaction ends
        cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute(f"EXPLAIN {page}")
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert "audit_created" in plan, plan


def test_the_admin_list_of_events_counts_them_once():
    AuditEvent.objects.create(
        organization=OrganizationFactory(), action="project.created", actor_type="system"
    )
    ops = Client()
    ops.force_login(UserFactory(is_staff=True, is_superuser=True))

    with CaptureQueriesContext(connection) as statements:
        response = ops.get("/admin/audit/auditevent/", {"actor_type": "system"})

    assert response.status_code == 200
    counts = [q["sql"] for q in statements if q["sql"].startswith("SELECT COUNT(*)")]
    assert len(counts) == 1, counts
