"""The worker's frequent reads go through an index, not a scan of the table (PostgreSQL).

A scale audit timed them at volume: the expiry checks (every five minutes) 400 ms at
100,000 keys, the usage copy's prune of old IPs (every 30 s) 16-44 ms at 300,000 rows, the
reset asks' cleanup (every 15 s) 37-41 ms at 340,000 task results, each a sequential
scan. With sequential scans priced out, each plan must name its index: the query's shape
and the index's still fit.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tasks import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from apps.accounts.password_reset import mail_reset_link
from apps.apikeys.models import KeyUsageIp
from apps.apikeys.usage.flush import IP_HISTORY
from apps.notifications import checks

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's planner"),
]


def plan_of(queryset) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # until the test's transaction ends
    return queryset.explain()


def test_the_expiry_checks_read_a_range_of_active_keys_expiring():
    """The checks' own statement, as they send it."""
    with CaptureQueriesContext(connection) as statements:
        list(checks.expiring_keys(timezone.now()))
    [select] = [q["sql"] for q in statements if "apikeys_apikey" in q["sql"]]
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {select}")
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "apikeys_active_expiry" in plan


def test_the_usage_copy_finds_ips_unseen_for_90_days_by_their_age():
    old = KeyUsageIp.objects.filter(last_seen_at__lt=timezone.now() - IP_HISTORY)
    assert "apikeys_usage_ip_seen" in plan_of(old)


def test_the_reset_asks_cleanup_finds_its_task_results_by_path_and_status():
    finished = DBTaskResult.objects.filter(
        task_path=mail_reset_link.module_path,
        status__in=[TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED],
    )
    assert "core_task_results_path_status" in plan_of(finished)
