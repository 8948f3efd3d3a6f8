"""Every column a migration adds to a table an earlier one created can be left out of an
INSERT: the release before runs against the migrated database until the deploy ends
(README, Upgrading), and its inserts do not name the column.

Found by a rolling-deploy audit: `Reminder.emailed_to` (notifications 0005) and three of
`ApiKey`'s columns (apikeys 0003) are NOT NULL without a database default; the worker of
the release before 0005 wrote no reminder against the migrated database.
"""

from __future__ import annotations

import pytest
from django.db import migrations, models
from django.db.migrations.loader import MigrationLoader

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


def columns_the_release_before_cannot_leave_out() -> dict[tuple[str, str, str, str], str]:
    """Each `AddField` of a column to a model an earlier migration created that an INSERT
    naming no such column fails on: NOT NULL and no `db_default`. What is wrong with it."""
    loader = MigrationLoader(None, ignore_no_migrations=True)  # the files: no database
    found = {}
    for (app, name), migration in loader.disk_migrations.items():
        if not _ours(migration):
            continue
        created_here = {
            op.name_lower for op in migration.operations if isinstance(op, migrations.CreateModel)
        }
        for op in migration.operations:
            if not isinstance(op, migrations.AddField) or op.model_name_lower in created_here:
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


def test_every_added_column_has_a_database_default_or_allows_null():
    offending = {
        where: why
        for where, why in columns_the_release_before_cannot_leave_out().items()
        if where not in HISTORICAL
    }

    assert not offending, (
        "These migrations add a NOT NULL column without a database default to a table the "
        "release before still inserts into (without naming the column): its inserts fail "
        "until the deploy ends. Give the field db_default=... (next to default=..., the same "
        "value), or null=True:\n"
        + "\n".join(
            f"  {app} {name}: {model}.{field}: {why}"
            for (app, name, model, field), why in sorted(offending.items())
        )
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
