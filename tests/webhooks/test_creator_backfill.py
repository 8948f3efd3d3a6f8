"""Filling a new column from a migration, a batch per transaction (core.backfill).

A rollout audit: `apikeys.0008` added `created_by_email` and filled every key in the same
transaction, so the ALTER TABLE's lock was held for the whole fill (315 s at a million keys,
every key check stopped); and the rows the release before inserted while both served kept
an empty address for good, while an account it deleted left its address behind.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader
from django.test.utils import CaptureQueriesContext

from apps.accounts.models import User
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from apps.orgs.models import Membership
from apps.webhooks.models import Webhook
from core.backfill import in_batches
from core.permissions import Role
from tests.factories import MembershipFactory, make_key

FILLS = {
    ("apikeys", "0008_created_by_email"),
    ("apikeys", "0009_refill_created_by_email"),
    ("webhooks", "0004_created_by_email"),
    ("webhooks", "0005_refill_created_by_email"),
}


def test_the_migrations_that_fill_a_column_run_a_batch_per_transaction():
    migrations = MigrationLoader(None, ignore_no_migrations=True).disk_migrations
    assert {name: migrations[name].atomic for name in FILLS} == dict.fromkeys(FILLS, False)


@pytest.mark.django_db
def test_a_fill_writes_a_batch_per_statement_and_visits_each_row_once(project):
    for n in range(5):
        make_key(KeyKind.SECRET, project=project, name=f"key {n}")
    ApiKey.objects.update(created_by_email="")

    with CaptureQueriesContext(connection) as queries:
        done = in_batches(
            ApiKey.objects.filter(created_by_email=""), {"created_by_email": "x"}, batch=2
        )

    assert done == 5 and set(ApiKey.objects.values_list("created_by_email", flat=True)) == {"x"}
    updates = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert len(updates) == 3  # 2 + 2 + 1


@pytest.mark.django_db(transaction=True)
def test_the_next_release_fills_what_the_release_before_left(organization, project, make_webhook):
    member = MembershipFactory(organization=organization, role=Role.ADMIN).user
    leaver = MembershipFactory(organization=organization, role=Role.ADMIN).user
    executor = MigrationExecutor(connection)
    executor.migrate([("apikeys", "0008_created_by_email"), ("webhooks", "0004_created_by_email")])
    # As the release before 0008 wrote them while both served: its inserts took the
    # column's database default, and it deleted an account without emptying it.
    made, _ = make_key(KeyKind.SECRET, project=project, actor=member, name="by the old release")
    hook = make_webhook("http://127.0.0.1:9/hook", actor=member).webhook
    left, _ = make_key(KeyKind.SECRET, project=project, actor=leaver, name="the leaver's")
    ApiKey.objects.filter(pk=made.pk).update(created_by_email="")
    Webhook.objects.filter(pk=hook.pk).update(created_by_email="")
    Membership.objects.filter(user=leaver).delete()
    User.objects.filter(pk=leaver.pk).delete()  # a queryset delete, as without the receiver
    ApiKey.objects.filter(pk=left.pk).update(created_by_email=leaver.email)

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    assert ApiKey.objects.get(pk=made.pk).created_by_email == member.email
    assert Webhook.objects.get(pk=hook.pk).created_by_email == member.email
    assert (
        ApiKey.objects.get(pk=left.pk).created_by_id,
        ApiKey.objects.get(pk=left.pk).created_by_email,
    ) == (None, "")
