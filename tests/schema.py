"""The schema as the next release leaves it, for a test of this release's code against it."""

from __future__ import annotations

from django.db import connection


def a_column_this_release_does_not_fill(model) -> None:
    """Give `model`'s table a NOT NULL column without a database default, which this
    release's inserts do not name: what a migration whose `AddField` has no `db_default`
    leaves for the release before (Django drops the default it added the column with).
    In the test's transaction, so it goes with it. SQLite adds no NOT NULL column without
    a default and keeps the default it is given: a trigger refuses the insert as the column
    would."""
    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # the test's rows' deferred foreign-key checks first: no ALTER TABLE with them pending
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(f"ALTER TABLE {table} ADD COLUMN next_release text NOT NULL DEFAULT ''")
            cursor.execute(f"ALTER TABLE {table} ALTER COLUMN next_release DROP DEFAULT")
        else:
            cursor.execute(
                f"CREATE TRIGGER next_release_not_null BEFORE INSERT ON {table} BEGIN "
                f"SELECT RAISE(ABORT, 'NOT NULL constraint failed: {model._meta.db_table}"
                ".next_release'); END"
            )
