"""Migrations run while the release before serves (README, Upgrading). Two rules for what
they do to a table an earlier migration created:

* every column they add can be left out of an INSERT: the release before runs against the
  migrated database until the deploy ends, and its inserts do not name the column;
* no index, constraint or NOT NULL is built under a lock held for the build: on PostgreSQL
  `lock_timeout` bounds the wait for the lock, not its holding, and a plain `AddIndex`
  stops every write to the table (mints, revocations, `lastUsedAt`) until it is built, a
  unique or check `AddConstraint` every key check too. `core.online_schema` has the
  operations that build them online.

Found by a rolling-deploy audit: `Reminder.emailed_to` (notifications 0005) and three of
`ApiKey`'s columns (apikeys 0003) are NOT NULL without a database default; the worker of
the release before 0005 wrote no reminder against the migrated database.
"""

from __future__ import annotations

import re

import pytest
from django.db import migrations, models
from django.db.migrations.loader import MigrationLoader

from core.online_schema import AddCheckConstraintOnline, AddIndexOnline, AddUniqueConstraintOnline

#: (app, migration, model, field) -> why it is tolerated. Shrinks only: a new migration
#: gives its column a `db_default` or lets it be NULL.
HISTORICAL = {
    ("apikeys", "0003_guardrails_and_usage", "apikey", "allowed_ips"): (
        "shipped before the rule (README, Upgrading); the release before it is long gone"
    ),
    ("apikeys", "0003_guardrails_and_usage", "apikey", "project_ids"): (
        "shipped before the rule; the release before it is long gone"
    ),
    ("apikeys", "0003_guardrails_and_usage", "apikey", "last_used_user_agent"): (
        "shipped before the rule; the release before it is long gone"
    ),
    ("notifications", "0005_reminder_emailed_to", "reminder", "emailed_to"): (
        "shipped before the rule (the audit's case); the release before it is long gone"
    ),
}


def _ours(migration) -> bool:
    """A migration of this project's apps, not of Django's or a library's (by module, not
    by file: CI's virtualenv, with the libraries' migrations, lies inside the checkout)."""
    return migration.__module__.startswith(("apps.", "core."))


def _changes_to_existing_tables(migration):
    """The operations of `migration` on models an earlier migration created."""
    created_here = {
        op.name_lower for op in migration.operations if isinstance(op, migrations.CreateModel)
    }
    return [
        op
        for op in migration.operations
        if getattr(op, "model_name_lower", None) not in (None, *created_here)
    ]


def columns_the_release_before_cannot_leave_out() -> dict[tuple[str, str, str, str], str]:
    """Each `AddField` of a column to a model an earlier migration created that an INSERT
    naming no such column fails on: NOT NULL and no `db_default`. What is wrong with it."""
    loader = MigrationLoader(None, ignore_no_migrations=True)  # the files: no database
    found = {}
    for (app, name), migration in loader.disk_migrations.items():
        if not _ours(migration):
            continue
        for op in _changes_to_existing_tables(migration):
            if not isinstance(op, migrations.AddField):
                continue
            field = op.field
            if field.many_to_many or field.null or isinstance(field, models.GeneratedField):
                continue
            if field.db_default is not models.NOT_PROVIDED:
                continue
            found[(app, name, op.model_name_lower, op.name)] = (
                "its `default` is Python's only: Django drops the database default once the "
                "column is added"
                if field.has_default()
                else "it has no default at all"
            )
    return found


def _listing(found: dict) -> str:
    return "\n".join(
        f"  {app} {name}: {model}.{what}: {why}"
        for (app, name, model, what), why in sorted(found.items())
    )


def test_every_added_column_has_a_database_default_or_allows_null():
    offending = {
        k: why
        for k, why in columns_the_release_before_cannot_leave_out().items()
        if k not in HISTORICAL
    }

    assert not offending, (
        "These migrations add a NOT NULL column without a database default to a table the "
        "release before still inserts into (without naming the column): its inserts fail "
        "until the deploy ends. Give the field db_default=... (next to default=..., the same "
        "value), or null=True:\n" + _listing(offending)
    )


def test_the_tolerated_columns_are_still_there_to_tolerate():
    """A tolerated entry that no longer matches (its migration fixed, renamed or squashed)
    goes from `HISTORICAL`, which stays the list of what is left."""
    stale = set(HISTORICAL) - set(columns_the_release_before_cannot_leave_out())

    assert not stale, f"no longer found, remove from HISTORICAL: {sorted(stale)}"


def test_the_check_finds_a_python_only_default_and_a_missing_one(monkeypatch):
    """The check itself: a Python-only `default` and no default at all are both found,
    each with what to do; `db_default` and `null=True` are not."""
    loader_type = MigrationLoader
    added = [
        migrations.AddField("reminder", "python_only", models.IntegerField(default=0)),
        migrations.AddField("reminder", "nothing", models.TextField()),
        migrations.AddField("reminder", "fine", models.IntegerField(default=0, db_default=0)),
        migrations.AddField("reminder", "nullable", models.TextField(null=True)),
    ]

    class WithANewMigration(loader_type):
        def build_graph(self):
            super().build_graph()
            migration = migrations.Migration("0099_next_release", "notifications")
            migration.operations = added
            migration.__module__ = "apps.notifications.migrations.0005_reminder_emailed_to"
            self.disk_migrations[("notifications", "0099_next_release")] = migration

    monkeypatch.setattr(f"{__name__}.MigrationLoader", WithANewMigration)
    found = columns_the_release_before_cannot_leave_out()

    assert (
        "Python's only" in found[("notifications", "0099_next_release", "reminder", "python_only")]
    )
    assert "no default" in found[("notifications", "0099_next_release", "reminder", "nothing")]
    assert ("notifications", "0099_next_release", "reminder", "fine") not in found
    assert ("notifications", "0099_next_release", "reminder", "nullable") not in found
    with pytest.raises(AssertionError, match=r"(?s)db_default=\.\.\..*python_only"):
        test_every_added_column_has_a_database_default_or_allows_null()


_SHIPPED = "shipped before the rule (2026-12-07); every deployment has applied it"
_INITIAL = (
    "the initial schema's second half (split by Django for a dependency): its table was empty"
)
#: (app, migration, model, index or field) -> why it is tolerated. Shrinks only: a new
#: migration uses `core.online_schema`.
HISTORICAL_LOCKS = {
    ("apikeys", "0003_guardrails_and_usage", "apikey", "apikeys_rate_limit_both_or_neither"): (
        _SHIPPED
    ),
    ("apikeys", "0004_digest_unique_without_like_index", "apikey", "apikeys_digest_unique"): (
        _SHIPPED
    ),
    ("apikeys", "0005_key_page_indexes", "apikey", "apikeys_legacy_unrevoked"): _SHIPPED,
    ("apikeys", "0005_key_page_indexes", "apikey", "apikeys_project_type_created"): _SHIPPED,
    ("apikeys", "0007_expiry_and_ip_age_indexes", "apikey", "apikeys_active_expiry"): _SHIPPED,
    ("apikeys", "0007_expiry_and_ip_age_indexes", "keyusageip", "apikeys_usage_ip_seen"): (
        _SHIPPED
    ),
    (
        "invitations",
        "0002_token_digest_unique_without_like_index",
        "invitation",
        "invitations_token_digest_unique",
    ): _SHIPPED,
    ("notifications", "0002_initial", "reminder", "notif_reminder_unsent"): _INITIAL,
    ("notifications", "0002_initial", "reminder", "webhook"): _INITIAL,
    (
        "notifications",
        "0003_dedupe_key_unique_without_like_index",
        "reminder",
        "notif_reminder_dedupe_unique",
    ): _SHIPPED,
    ("notifications", "0004_reminder_claim", "reminder", "notif_reminder_claim"): _SHIPPED,
    ("orgs", "0002_key_max_lifetime_days", "organization", "orgs_key_max_lifetime_days_range"): (
        _SHIPPED
    ),
    ("webhooks", "0002_delivery_turn", "delivery", "webhooks_delivery_turn"): _SHIPPED,
    ("webhooks", "0003_delivery_parked", "delivery", "webhooks_delivery_leased"): _SHIPPED,
    ("webhooks", "0003_delivery_parked", "delivery", "webhooks_delivery_parked"): _SHIPPED,
    ("core", "0002_task_results_by_path", "(sql)", "operation 0"): _SHIPPED,
}


def _indexed(field) -> bool:
    return bool(field.unique or field.db_index) and not field.primary_key


def _checked_not_null(operations) -> set[str]:
    """The fields an `AddCheckConstraintOnline(condition=Q(field__isnull=False))` among
    `operations` has checked: PostgreSQL then makes them NOT NULL without reading a row."""
    return {
        lookup.removesuffix("__isnull")
        for op in operations
        if isinstance(op, AddCheckConstraintOnline)
        for lookup, value in [c for c in op.constraint.condition.children if len(c) == 2]
        if lookup.endswith("__isnull") and value is False
    }


def _offline_change(op, field_before, checked: set[str] = frozenset()) -> str | None:
    """What `op` builds under a lock it holds for the build, or None."""
    if isinstance(op, migrations.AddIndex) and not isinstance(op, AddIndexOnline):
        return "AddIndex stops writes while it builds: AddIndexOnline"
    if isinstance(op, migrations.AddConstraint):
        constraint = op.constraint
        if isinstance(constraint, models.UniqueConstraint) and not isinstance(
            op, AddUniqueConstraintOnline
        ):
            return "a unique AddConstraint stops reads and writes: AddUniqueConstraintOnline"
        if isinstance(constraint, models.CheckConstraint) and not isinstance(
            op, AddCheckConstraintOnline
        ):
            return "a check AddConstraint stops reads and writes: AddCheckConstraintOnline"
    if isinstance(op, migrations.AddField) and _indexed(op.field):
        return (
            "the column's index is built while the ALTER TABLE's lock is held: add it with "
            "db_index=False (unique=False), then AddIndexOnline / AddUniqueConstraintOnline"
        )
    if isinstance(op, migrations.AlterField) and field_before is not None:
        if field_before.null and not op.field.null and op.name not in checked:
            return (
                "NOT NULL reads every row under an ACCESS EXCLUSIVE lock: first "
                "AddCheckConstraintOnline(... __isnull=False), then the AlterField"
            )
        if _indexed(op.field) and not _indexed(field_before):
            return "the index is built under the ALTER TABLE's lock: AddIndexOnline"
    return None


def _named(op) -> str:
    if isinstance(op, migrations.AddIndex):
        return op.index.name
    if isinstance(op, migrations.AddConstraint):
        return op.constraint.name
    return op.name


def changes_built_under_a_held_lock() -> dict[tuple[str, str, str, str], str]:
    """Each operation of the project's migrations that builds an index, a constraint or a
    NOT NULL on an earlier migration's table while holding a lock that stops its writes or
    reads: what it should use instead."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    found = {}
    for (app, name), migration in loader.disk_migrations.items():
        if not _ours(migration):
            continue
        state, checked = None, _checked_not_null(migration.operations)
        for op in _changes_to_existing_tables(migration):
            field_before = None
            if isinstance(op, migrations.AlterField):
                state = state or loader.project_state((app, name), at_end=False)
                field_before = state.models[app, op.model_name_lower].fields.get(op.name)
            why = _offline_change(op, field_before, checked)
            if why is not None:
                found[(app, name, op.model_name_lower, _named(op))] = why
        for number, op in enumerate(migration.operations):
            if isinstance(op, migrations.RunSQL) and _OFFLINE_SQL.search(str(op.sql)):
                found[(app, name, "(sql)", f"operation {number}")] = (
                    "raw SQL builds an index, a constraint or a NOT NULL offline: "
                    "CREATE INDEX CONCURRENTLY (atomic = False), or core.online_schema"
                )
    return found


#: What raw SQL builds under a held lock: an index built without CONCURRENTLY, a constraint
#: added neither NOT VALID nor USING INDEX, a NOT NULL set.
_OFFLINE_SQL = re.compile(
    r"CREATE\s+(UNIQUE\s+)?INDEX\s+(?!CONCURRENTLY)"
    r"|ADD\s+CONSTRAINT\s+(?![^;]*(NOT\s+VALID|USING\s+INDEX))"
    r"|SET\s+NOT\s+NULL",
    re.IGNORECASE,
)


def test_no_index_or_constraint_is_built_under_a_held_lock():
    offending = {
        k: why for k, why in changes_built_under_a_held_lock().items() if k not in HISTORICAL_LOCKS
    }

    assert not offending, (
        "These migrations build an index, a constraint or a NOT NULL on a table the release "
        "before serves from while holding a lock that stops it (core.online_schema, in a "
        "migration with atomic = False):\n" + _listing(offending)
    )


def test_the_tolerated_locks_are_still_there_to_tolerate():
    stale = set(HISTORICAL_LOCKS) - set(changes_built_under_a_held_lock())

    assert not stale, f"no longer found, remove from HISTORICAL_LOCKS: {sorted(stale)}"


def test_the_lock_check_finds_each_offline_change_and_passes_the_online_ones(monkeypatch):
    last = ("notifications", "0005_reminder_emailed_to")
    operations = [
        migrations.AddIndex("reminder", models.Index(fields=["kind"], name="plain_idx")),
        AddIndexOnline("reminder", models.Index(fields=["kind"], name="online_idx")),
        migrations.AddConstraint(
            "reminder", models.UniqueConstraint(fields=["kind"], name="plain_unique")
        ),
        AddUniqueConstraintOnline(
            "reminder", models.UniqueConstraint(fields=["kind"], name="online_unique")
        ),
        migrations.AddField("reminder", "indexed", models.IntegerField(null=True, db_index=True)),
        migrations.AddField("reminder", "plain", models.IntegerField(null=True)),
        migrations.AlterField("reminder", "emailed_at", models.DateTimeField()),
        migrations.AlterField("reminder", "locked_until", models.DateTimeField(null=True)),
        AddCheckConstraintOnline(
            "reminder",
            models.CheckConstraint(condition=models.Q(claim__isnull=False), name="claim_not_null"),
        ),
        migrations.AlterField("reminder", "claim", models.UUIDField(editable=False)),
        migrations.RunSQL("CREATE INDEX plain_sql ON t (a)"),
        migrations.RunSQL("CREATE INDEX CONCURRENTLY online_sql ON t (a)"),
        migrations.RunSQL("ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0) NOT VALID"),
    ]

    class WithANewMigration(MigrationLoader):
        def build_graph(self):
            super().build_graph()
            migration = migrations.Migration("0099_next_release", "notifications")
            migration.operations = operations
            migration.dependencies = [last]
            migration.__module__ = "apps.notifications.migrations.0099_next_release"
            key = ("notifications", "0099_next_release")
            self.disk_migrations[key] = migration
            self.graph.add_node(key, migration)
            self.graph.add_dependency(migration, key, last)

    monkeypatch.setattr(f"{__name__}.MigrationLoader", WithANewMigration)
    found = {
        what: why
        for (app, name, _model, what), why in changes_built_under_a_held_lock().items()
        if name == "0099_next_release"
    }

    assert set(found) == {"plain_idx", "plain_unique", "indexed", "emailed_at", "operation 10"}
    assert "AddIndexOnline" in found["plain_idx"]
    assert "NOT NULL" in found["emailed_at"]
    assert "AddUniqueConstraintOnline" in found["plain_unique"]
    with pytest.raises(AssertionError, match="plain_idx"):
        test_no_index_or_constraint_is_built_under_a_held_lock()
