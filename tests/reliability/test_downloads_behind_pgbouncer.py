"""A download behind PgBouncer in transaction mode (the default settings, SPEC §4.14):
each chunk is its own statement, so a file reads whole when its chunks run on different
server sessions (a server-side cursor would be lost between them)."""

from __future__ import annotations

from django.utils import timezone

from apps.audit.models import AuditEvent
from tests.factories import OrganizationFactory
from tests.reliability.test_pgbouncer import pytestmark as pgbouncer_marks
from tests.reliability.test_pgbouncer import run_behind_pgbouncer

pytestmark = pgbouncer_marks

_CHUNKS_ON_TWO_SESSIONS = """
import os
import django
django.setup()
import psycopg
from apps.audit.models import AuditEvent
from core import export

rows = export.newest_first(AuditEvent.objects.filter(organization_id="{organization_id}"), chunk=2)
read = [next(rows).id, next(rows).id]  # the first chunk, on whichever session PgBouncer lends
holder = psycopg.connect(os.environ["DATABASE_URL"].replace("postgres://", "postgresql://"))
holder.execute("SELECT 1")  # an open transaction keeps that session busy: the rest elsewhere
read += [row.id for row in rows]
holder.rollback()
print(" ".join(str(i) for i in read))
"""


def test_a_download_reads_every_row_when_chunks_run_on_other_sessions(transactional_db):
    organization = OrganizationFactory()
    AuditEvent.objects.bulk_create(
        AuditEvent(
            organization=organization,
            action="key.minted",
            actor_type="system",
            created_at=timezone.now(),
        )
        for _ in range(5)
    )
    expected = [
        str(i)
        for i in AuditEvent.objects.filter(organization=organization)
        .order_by("-created_at", "-id")
        .values_list("id", flat=True)
    ]

    result = run_behind_pgbouncer(_CHUNKS_ON_TWO_SESSIONS.format(organization_id=organization.id))

    assert result.returncode == 0, result.stderr[-1500:]
    assert result.stdout.split() == expected
