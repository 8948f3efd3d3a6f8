"""Migration operations that keep a busy table serving while they change it.

Django's plain operations lock the table for as long as they work on PostgreSQL:
`AddIndex` takes a SHARE lock for the whole build (no mint, revocation or `lastUsedAt`
write meanwhile), a unique `AddConstraint` an ACCESS EXCLUSIVE one (no key check either),
a `CheckConstraint` the same while it reads every row. `lock_timeout` (README → Upgrading)
bounds the wait for a lock, not its holding. These build on PostgreSQL's online forms,
through Django's own operations for them (`django.contrib.postgres.operations`), and are
Django's plain operations on SQLite (the demo's embedded default, one process):

* `AddIndexOnline` / `RemoveIndexOnline`: `CREATE` / `DROP INDEX CONCURRENTLY`;
* `AddUniqueConstraintOnline`: the unique index built concurrently, then made the
  constraint (`ADD CONSTRAINT … UNIQUE USING INDEX`, a change of the catalogue only);
* `AddCheckConstraintOnline`: added `NOT VALID` (new rows checked at once), then validated
  in a transaction of its own, which reads the rows while writes go on.

A migration using them sets `atomic = False` (PostgreSQL builds concurrently only outside
a transaction), so each is safe to run again after a failure or a `lock_timeout`: an
index a failed concurrent build left INVALID is dropped and built again, one already
built is kept. `tests/test_migrations_rolling.py` refuses a migration that changes an
existing table's indexes or constraints another way.
"""

from __future__ import annotations

from django.contrib.postgres.operations import (
    AddConstraintNotValid,
    AddIndexConcurrently,
    RemoveIndexConcurrently,
)
from django.db import NotSupportedError, migrations, models, transaction


def _online(schema_editor) -> bool:
    return schema_editor.connection.vendor == "postgresql"


def _refuse_in_transaction(operation, schema_editor) -> None:
    """Before the first statement: PostgreSQL builds concurrently only outside a
    transaction, and the statements run before Django's operation would refuse it."""
    if not transaction.get_autocommit(schema_editor.connection.alias):
        raise NotSupportedError(
            f"The {type(operation).__name__} operation cannot be executed inside a transaction "
            "(set atomic = False on the migration)."
        )


def _index_state(schema_editor, name: str) -> bool | None:
    """Whether the index `name` is valid, or None when there is none (any table)."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = %s AND pg_catalog.pg_table_is_visible(c.oid)",
            [name],
        )
        row = cursor.fetchone()
    return None if row is None else row[0]


def _constraint_exists(schema_editor, table: str, name: str) -> bool:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_constraint WHERE conname = %s AND conrelid = %s::regclass",
            [name, table],
        )
        return cursor.fetchone() is not None


def _build_again_if_invalid(schema_editor, name: str) -> bool:
    """Drop what a failed concurrent build of `name` left behind (an INVALID index, kept by
    PostgreSQL and never used). Whether a valid one is already there."""
    valid = _index_state(schema_editor, name)
    if valid is False:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(name)}")
    return bool(valid)


class AddIndexOnline(AddIndexConcurrently):
    """`AddIndex`, built with `CREATE INDEX CONCURRENTLY` on PostgreSQL."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if not _online(schema_editor):
            return migrations.AddIndex.database_forwards(
                self, app_label, schema_editor, from_state, to_state
            )
        _refuse_in_transaction(self, schema_editor)
        if not _build_again_if_invalid(schema_editor, self.index.name):
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if not _online(schema_editor):
            return migrations.AddIndex.database_backwards(
                self, app_label, schema_editor, from_state, to_state
            )
        return super().database_backwards(app_label, schema_editor, from_state, to_state)


class RemoveIndexOnline(RemoveIndexConcurrently):
    """`RemoveIndex`, dropped with `DROP INDEX CONCURRENTLY` on PostgreSQL."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if not _online(schema_editor):
            return migrations.RemoveIndex.database_forwards(
                self, app_label, schema_editor, from_state, to_state
            )
        return super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if not _online(schema_editor):
            return migrations.RemoveIndex.database_backwards(
                self, app_label, schema_editor, from_state, to_state
            )
        _refuse_in_transaction(self, schema_editor)
        if not _build_again_if_invalid(schema_editor, self.name):
            super().database_backwards(app_label, schema_editor, from_state, to_state)


class AddUniqueConstraintOnline(migrations.AddConstraint):
    """`AddConstraint` of a `UniqueConstraint` on plain fields: on PostgreSQL its index is
    built concurrently, then attached as the constraint (the same constraint, name and
    index as Django's own would make)."""

    def __init__(self, model_name, constraint):
        plain = isinstance(constraint, models.UniqueConstraint) and not (
            constraint.condition
            or constraint.expressions
            or constraint.include
            or constraint.opclasses
            or constraint.deferrable
            or constraint.nulls_distinct is not None
        )
        if not plain:
            raise TypeError(f"{type(self).__name__} takes a UniqueConstraint of fields only")
        super().__init__(model_name, constraint)

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        model = to_state.apps.get_model(app_label, self.model_name)
        if not _online(schema_editor) or not self.allow_migrate_model(
            schema_editor.connection.alias, model
        ):
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        _refuse_in_transaction(self, schema_editor)
        quote = schema_editor.quote_name
        table, name = quote(model._meta.db_table), quote(self.constraint.name)
        columns = ", ".join(quote(model._meta.get_field(f).column) for f in self.constraint.fields)
        if not _build_again_if_invalid(schema_editor, self.constraint.name):
            schema_editor.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {name} ON {table} ({columns})")
        if not _constraint_exists(schema_editor, model._meta.db_table, self.constraint.name):
            schema_editor.execute(
                f"ALTER TABLE {table} ADD CONSTRAINT {name} UNIQUE USING INDEX {name}"
            )


class AddCheckConstraintOnline(AddConstraintNotValid):
    """`AddConstraint` of a `CheckConstraint`: on PostgreSQL added `NOT VALID`, then
    validated in a transaction of its own (rows read under a lock that lets writes go on)."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if not _online(schema_editor):
            return migrations.AddConstraint.database_forwards(
                self, app_label, schema_editor, from_state, to_state
            )
        _refuse_in_transaction(self, schema_editor)
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return None
        table, name = model._meta.db_table, self.constraint.name
        if not _constraint_exists(schema_editor, table, name):  # a run before may have
            super().database_forwards(app_label, schema_editor, from_state, to_state)
        quote = schema_editor.quote_name
        schema_editor.execute(f"ALTER TABLE {quote(table)} VALIDATE CONSTRAINT {quote(name)}")

    @property
    def migration_name_fragment(self):
        return migrations.AddConstraint.migration_name_fragment.fget(self)
