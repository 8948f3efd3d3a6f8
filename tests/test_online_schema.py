"""`core.online_schema`: index and constraint changes that keep the table serving.

On PostgreSQL each is shown against what it replaces: while the change waits for a
transaction that holds the table (as it does behind any long one in production), another
session still writes and reads it; with Django's plain operation that session waits behind
the migration (here until its `lock_timeout`). Each is safe to run again after a failure.
On SQLite they are Django's plain operations.
"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from django.db import IntegrityError, NotSupportedError, connection, migrations, models, transaction
from django.db.migrations.state import ProjectState
from django.db.models.lookups import GreaterThanOrEqual

from core.online_schema import (
    AddCheckConstraintOnline,
    AddIndexOnline,
    AddUniqueConstraintOnline,
    RemoveIndexOnline,
)

APP = "online_schema_tests"
TABLE = "online_schema_widget"
POSTGRES = connection.vendor == "postgresql"
only_postgres = pytest.mark.skipif(not POSTGRES, reason="the online forms are PostgreSQL's")

pytestmark = pytest.mark.django_db(transaction=True)

INDEX = models.Index(fields=["code"], name="widget_code_idx")
UNIQUE = models.UniqueConstraint(fields=["code"], name="widget_code_unique")
CHECK = models.CheckConstraint(condition=models.Q(size__gte=0), name="widget_size_check")


@pytest.fixture
def widgets():
    """A table of the shape the operations change, created and dropped around the test."""
    state = ProjectState()
    create = migrations.CreateModel(
        "Widget",
        [
            ("id", models.BigAutoField(primary_key=True)),
            ("code", models.CharField(max_length=20)),
            ("size", models.IntegerField(default=0)),
        ],
        options={"db_table": TABLE},
    )
    before = state.clone()
    create.state_forwards(APP, state)
    with connection.schema_editor() as editor:
        create.database_forwards(APP, editor, before, state)
    yield state
    connection.close()  # a failed operation may leave the session in an aborted state
    with connection.schema_editor() as editor:
        editor.execute(f"DROP TABLE IF EXISTS {editor.quote_name(TABLE)}")


def apply(operation, state: ProjectState) -> ProjectState:
    after = state.clone()
    operation.state_forwards(APP, after)
    with connection.schema_editor(atomic=False) as editor:
        operation.database_forwards(APP, editor, state, after)
    return after


def unapply(operation, state: ProjectState, after: ProjectState) -> None:
    with connection.schema_editor(atomic=False) as editor:
        operation.database_backwards(APP, editor, after, state)


def constraints() -> dict:
    with connection.cursor() as cursor:
        return connection.introspection.get_constraints(cursor, TABLE)


def insert(code: str, size: int = 0) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {TABLE} (code, size) VALUES (%s, %s)", [code, size])


def other_session() -> psycopg.Connection:
    return psycopg.connect(**connection.get_connection_params(), autocommit=True)


def test_an_index_is_built_and_dropped(widgets):
    insert("a")
    after = apply(AddIndexOnline("widget", INDEX), widgets)
    assert constraints()["widget_code_idx"]["index"]

    dropped = apply(RemoveIndexOnline("widget", "widget_code_idx"), after)
    assert "widget_code_idx" not in constraints()

    unapply(RemoveIndexOnline("widget", "widget_code_idx"), after, dropped)
    assert "widget_code_idx" in constraints()


def test_a_unique_constraint_is_the_constraint_django_would_make(widgets):
    insert("a")
    after = apply(AddUniqueConstraintOnline("widget", UNIQUE), widgets)

    found = constraints()["widget_code_unique"]
    assert found["unique"] and found["columns"] == ["code"]
    with pytest.raises(IntegrityError), transaction.atomic():
        insert("a")

    unapply(AddUniqueConstraintOnline("widget", UNIQUE), widgets, after)
    assert "widget_code_unique" not in constraints()
    insert("a")


def test_a_check_constraint_holds_for_new_rows_and_old_ones(widgets):
    insert("a", size=1)
    apply(AddCheckConstraintOnline("widget", CHECK), widgets)

    assert constraints()["widget_size_check"]["check"]
    with pytest.raises(IntegrityError), transaction.atomic():
        insert("b", size=-1)


def test_only_a_unique_constraint_of_fields_is_taken():
    with pytest.raises(TypeError):
        AddUniqueConstraintOnline(
            "widget", models.UniqueConstraint(fields=["code"], name="x", condition=models.Q(size=1))
        )


@only_postgres
def test_a_check_constraint_the_old_rows_break_is_refused_and_not_left_half_on(widgets):
    insert("a", size=-1)
    with pytest.raises(IntegrityError):
        apply(AddCheckConstraintOnline("widget", CHECK), widgets)
    with other_session() as other:  # NOT VALID: added, not yet holding the old rows
        other.execute(f"DELETE FROM {TABLE} WHERE size < 0")

    apply(AddCheckConstraintOnline("widget", CHECK), widgets)  # again, as README says

    with other_session() as other:
        validated = other.execute(
            "SELECT convalidated FROM pg_constraint WHERE conname = 'widget_size_check'"
        ).fetchone()
    assert validated == (True,)


@only_postgres
def test_a_failed_unique_build_is_built_again_when_run_again(widgets):
    """A concurrent build that fails (here on duplicates) leaves an INVALID index behind,
    which PostgreSQL keeps and never uses; running the migration again replaces it."""
    insert("a")
    insert("a")
    with pytest.raises(IntegrityError):
        apply(AddUniqueConstraintOnline("widget", UNIQUE), widgets)
    with other_session() as other:
        left = other.execute(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = 'widget_code_unique'"
        ).fetchall()
        assert left == [(False,)]
        other.execute(f"DELETE FROM {TABLE} WHERE id = (SELECT max(id) FROM {TABLE})")

    apply(AddUniqueConstraintOnline("widget", UNIQUE), widgets)

    assert constraints()["widget_code_unique"]["unique"]


@only_postgres
@pytest.mark.parametrize(
    "operation",
    [AddIndexOnline("widget", INDEX), AddUniqueConstraintOnline("widget", UNIQUE)],
    ids=["index", "unique"],
)
def test_running_it_again_after_it_succeeded_changes_nothing(widgets, operation):
    apply(operation, widgets)
    apply(operation, widgets)

    assert [name for name in constraints() if name.startswith("widget_code")] == [
        operation.index.name if hasattr(operation, "index") else UNIQUE.name
    ]


@only_postgres
@pytest.mark.parametrize(
    "operation",
    [
        AddIndexOnline("widget", INDEX),
        AddUniqueConstraintOnline("widget", UNIQUE),
        AddCheckConstraintOnline("widget", CHECK),
    ],
    ids=["index", "unique", "check"],
)
def test_it_refuses_to_run_inside_a_transaction(widgets, operation):
    with pytest.raises(NotSupportedError, match="atomic = False"), transaction.atomic():
        after = widgets.clone()
        operation.state_forwards(APP, after)
        with connection.schema_editor(atomic=False) as editor:
            operation.database_forwards(APP, editor, widgets, after)
    assert [name for name in constraints() if name.startswith("widget_")] == []


@only_postgres
def test_it_refuses_a_session_whose_autocommit_was_turned_off(widgets):
    """No atomic block, but no autocommit either: the driver would open a transaction."""
    transaction.set_autocommit(False)
    try:
        with pytest.raises(NotSupportedError, match="atomic = False"):
            apply(AddIndexOnline("widget", INDEX), widgets)
    finally:
        transaction.rollback()
        transaction.set_autocommit(True)
    assert "widget_code_idx" not in constraints()


@only_postgres
def test_dropping_an_index_back_refuses_to_run_inside_a_transaction(widgets):
    after = apply(AddIndexOnline("widget", INDEX), widgets)
    dropped = apply(RemoveIndexOnline("widget", "widget_code_idx"), after)
    with pytest.raises(NotSupportedError, match="atomic = False"), transaction.atomic():
        unapply(RemoveIndexOnline("widget", "widget_code_idx"), after, dropped)
    assert "widget_code_idx" not in constraints()


def _meanwhile(
    operation, state: ProjectState, *, once: str, lock_timeout: str, then=lambda: None
) -> str:
    """Run `operation` in a thread; once its session waits on `once` (a `pg_stat_activity`
    wait event type or wait event), another session reads and writes the table with
    `lock_timeout`, then `then()` lets the operation finish. What that session met:
    "wrote", or "waited" (its lock timed out)."""
    migrating: dict = {}

    def migrate():
        try:
            migrating["pid"] = connection.cursor().connection.info.backend_pid
            apply(operation, state)
        except Exception as err:
            migrating["error"] = err
        finally:
            connection.close()

    thread = threading.Thread(target=migrate)
    thread.start()
    try:
        with other_session() as watcher:
            deadline = time.monotonic() + 10
            while once not in _waiting(migrating.get("pid"), watcher):
                assert time.monotonic() < deadline, f"the migration never waited on {once}"
                time.sleep(0.02)
            watcher.execute(f"SET lock_timeout = '{lock_timeout}'")
            try:
                watcher.execute(f"SELECT count(*) FROM {TABLE}").fetchone()
                watcher.execute(f"INSERT INTO {TABLE} (code, size) VALUES ('meanwhile', 0)")
                return "wrote"
            except psycopg.errors.LockNotAvailable:
                return "waited"
    finally:
        then()
        thread.join(timeout=30)
        assert "error" not in migrating, migrating.get("error")


def _waiting(pid: int | None, other: psycopg.Connection) -> tuple:
    if pid is None:
        return ()
    row = other.execute(
        "SELECT wait_event_type, wait_event FROM pg_stat_activity WHERE pid = %s", [pid]
    ).fetchone()
    return row or ()


@only_postgres
@pytest.mark.parametrize(
    ("operation", "met"),
    [
        (AddIndexOnline("widget", INDEX), "wrote"),
        (AddUniqueConstraintOnline("widget", UNIQUE), "wrote"),
        # Django's plain operations, to show what the check tells apart:
        (migrations.AddIndex("widget", INDEX), "waited"),
        (migrations.AddConstraint("widget", UNIQUE), "waited"),
    ],
    ids=["index", "unique", "plain index", "plain unique"],
)
def test_the_table_is_written_while_the_change_waits(widgets, operation, met):
    """While a transaction holds the table (a long one in production), the change waits
    for it; meanwhile another session still reads and writes."""
    with other_session() as holder:
        holder.execute("BEGIN")
        holder.execute(f"INSERT INTO {TABLE} (code, size) VALUES ('held', 0)")
        met_here = _meanwhile(
            operation, widgets, once="Lock", lock_timeout="1s", then=holder.rollback
        )

    assert met_here == met


#: A check each row takes 0.4 s to pass: the rows are read long enough to be watched.
SLOW_CHECK = models.CheckConstraint(
    condition=GreaterThanOrEqual(models.Func(models.F("size"), function="online_schema_slow"), 0),
    name="widget_size_slow_check",
)


@only_postgres
@pytest.mark.parametrize(
    ("operation", "met"),
    [
        (AddCheckConstraintOnline("widget", SLOW_CHECK), "wrote"),
        (migrations.AddConstraint("widget", SLOW_CHECK), "waited"),  # Django's plain one
    ],
    ids=["check", "plain check"],
)
def test_the_table_is_written_while_a_check_reads_its_rows(widgets, operation, met):
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION online_schema_slow(integer) RETURNS integer IMMUTABLE "
            "LANGUAGE sql AS 'SELECT $1 FROM pg_sleep(0.4)'"
        )
    try:
        insert("a", size=1)
        insert("b", size=2)
        assert _meanwhile(operation, widgets, once="PgSleep", lock_timeout="0.3s") == met
    finally:
        with other_session() as other:
            other.execute(f"DROP TABLE IF EXISTS {TABLE}")
            other.execute("DROP FUNCTION IF EXISTS online_schema_slow(integer)")
