"""Precompiled single-row SELECTs for the authentication hot path.

Why raw SQL: every `/v1` request authenticates, always with the same question
("the key with this digest, with its organization and project"; "the session
with this id, with its user"). Through the ORM, building and compiling that
queryset cost more than the indexed lookup itself, and on PostgreSQL parsing
and planning the three-table join cost several times what executing it does.
So:

* the statement is written once per database vendor from the models' metadata
  (every concrete column of the model and of each to-one relation, in the
  ORM's order), and only the parameter changes;
* on PostgreSQL (psycopg 3, client-side binding: Django's default) it is
  prepared once per database session with SQL ``PREPARE`` — sent together
  with the first ``EXECUTE``, so that request still makes one round trip —
  and then run with ``EXECUTE``. Prepared statements live as long as the
  session and survive rollbacks. Outside a transaction, if the server does
  not know the statement (a transaction-mode pooler handed us another
  backend, or ``DISCARD ALL``) it is prepared again, and if it already knows
  it, it is executed; inside one, that error stands like any other. Elsewhere
  (SQLite, server-side binding) the plain statement runs; Python's sqlite3
  caches compiled statements by their text anyway.

The connection, cursor, error wrapping and query logging are Django's
(`connection.cursor()`): the query shows in `CaptureQueriesContext` and a
database outage still becomes 503.

The result is exactly what the ORM returns for
``Model.objects.select_related(*related).only(*only).filter(<field>=value).first()``
when `<field>` is unique (without `only`, every column): values go through the
ORM's own converters (SQLite keeps UUIDs as 32-hex text, JSON and times as
text; PostgreSQL hands JSON back as text too; PostgreSQL timestamps are read as
UTC wall-clock time, see `_reads_utc_wall_clock`), instances are built as
`Model.from_db` builds them (see `_from_db`), and the relation cache is filled
(None for a missing nullable relation). Fields left out by `only` are deferred,
as the ORM defers them: reading one loads it with a query of its own. Each
column costs the server and the driver a little on every request, so the hot
paths read only what they use. A related row's primary key is not selected when
the join is on it: it is the foreign key's value. tests/test_performance.py
proves the equality on PostgreSQL and SQLite.

Nothing is cached but SQL text and converters: every call reads the database,
so a revoked key or an ended session fails on the next request, on every
process.
"""

from __future__ import annotations

import datetime as dt
import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.conf import settings
from django.core.signals import setting_changed
from django.db import ProgrammingError, connections
from django.db.models import Field, JSONField, Model
from django.db.models.base import ModelState
from django.db.models.signals import post_init, pre_init
from django.dispatch import receiver

M = TypeVar("M", bound=Model)

#: SQLSTATEs of a prepared statement the server does not have / already has.
_STATEMENT_UNKNOWN = "26000"
_STATEMENT_EXISTS = "42P05"


@dataclass(frozen=True, slots=True)
class _Part:
    """One model in the row: its columns are row[start:stop]."""

    model: type[Model]
    start: int
    stop: int
    #: Position within the part of a column that is never NULL in a row: NULL there
    #: means "no related row" (a LEFT JOIN). None when the row is always there.
    presence_offset: int | None
    #: The foreign key of the main model that this part fills (None for the main model).
    via: Field | None
    #: Attribute names of the selected columns, in order.
    attnames: tuple[str, ...]
    #: Attribute name of the primary key when it is not selected but is `via`'s value.
    pk_from_via: str | None
    #: The model keeps Django's own `__init__` and `from_db`.
    plain: bool


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    parts: tuple[_Part, ...]
    converters: tuple[tuple[int, tuple[Callable[..., Any], ...], Any], ...]
    #: "PREPARE name AS ...; EXECUTE name(%s)" and "EXECUTE name(%s)", or None.
    prepare_and_execute: str | None
    execute: str | None
    #: "EXECUTE name", for a parameter written as a literal (see `_plain_literal`).
    execute_named: str | None


class JoinedRowSelect(Generic[M]):
    """``SELECT <model + to-one relations> WHERE <unique field> = %s``, compiled once per vendor.

    `related` names forward foreign keys of `model`; a nullable one is a LEFT
    JOIN, as in the ORM. `only` names the fields to load, as `QuerySet.only`
    does (`"field"` for the model, `"relation__field"` for a related model;
    primary keys are always loaded); the others are deferred. `name` names the
    prepared statement on PostgreSQL.
    """

    def __init__(
        self,
        model: type[M],
        *,
        related: Sequence[str],
        lookup_field: str,
        name: str,
        only: Sequence[str] | None = None,
    ) -> None:
        self.model = model
        self.related = tuple(model._meta.get_field(field) for field in related)
        self.lookup_field = model._meta.get_field(lookup_field)
        if not (self.lookup_field.unique or self.lookup_field.primary_key):
            raise ValueError("JoinedRowSelect looks rows up by a unique field only")
        self.name = name
        self.only = None if only is None else self._loaded_fields(only)
        #: By database alias; emptied when a setting it depends on changes (tests).
        self._compiled: dict[str, _Compiled] = {}
        #: Database sessions (driver connections) that have the statement prepared.
        self._prepared_on: weakref.WeakSet = weakref.WeakSet()
        #: A `str` needs no preparing for a text column (CharField.get_prep_value is identity).
        self._text_lookup = self.lookup_field.get_internal_type() in ("CharField", "TextField")
        _selects.add(self)

    def _loaded_fields(self, only: Sequence[str]) -> dict[str | None, frozenset[Field]]:
        """The fields to load per part: None for the model, else the relation's name."""
        names: dict[str | None, set[str]] = {None: set()} | {fk.name: set() for fk in self.related}
        for entry in only:
            relation, _, field = entry.rpartition("__")
            if (relation or None) not in names:
                raise ValueError(f"{entry!r}: {relation!r} is not one of the related fields")
            names[relation or None].add(field)
        names[None] |= {self.lookup_field.name} | {fk.name for fk in self.related}
        models = {None: self.model} | {fk.name: fk.related_model for fk in self.related}
        return {
            part: frozenset(
                {models[part]._meta.get_field(name) for name in fields} | {models[part]._meta.pk}
            )
            for part, fields in names.items()
        }

    def get(self, value: Any, using: str = "default") -> M | None:
        """The row whose lookup field equals `value`, or None. One query."""
        connection = connections[using]
        compiled = self._compiled.get(using)
        if compiled is None:
            compiled = self._compiled[using] = self._compile(connection)
        if self._text_lookup and type(value) is str:
            param = value
        else:
            param = self.lookup_field.get_db_prep_value(value, connection, prepared=False)
        with connection.cursor() as cursor:
            if compiled.execute is None:
                cursor.execute(compiled.sql, [param])
                row = cursor.fetchone()
            else:
                row = self._execute_prepared(connection, cursor, compiled, param)
        if row is None:
            return None
        return self._instance(using, connection, compiled, list(row))

    def _execute_prepared(self, connection, cursor, compiled: _Compiled, param: Any):
        session = connection.connection
        for _attempt in range(3):
            try:
                if session in self._prepared_on:
                    literal = _plain_literal(param)
                    if literal is not None:
                        cursor.execute(f"{compiled.execute_named}({literal})")
                    else:
                        cursor.execute(compiled.execute, [param])
                else:
                    cursor.execute(compiled.prepare_and_execute, [param])
                    cursor.nextset()  # from PREPARE's result to EXECUTE's rows
                    self._prepared_on.add(session)
                return cursor.fetchone()
            except ProgrammingError as exc:
                state = getattr(exc.__cause__, "sqlstate", None)
                if connection.in_atomic_block or state not in (
                    _STATEMENT_UNKNOWN,
                    _STATEMENT_EXISTS,
                ):
                    raise
                if state == _STATEMENT_UNKNOWN:
                    self._prepared_on.discard(session)
                else:
                    self._prepared_on.add(session)
        cursor.execute(compiled.sql, [param])
        return cursor.fetchone()

    def _instance(self, using: str, connection, compiled: _Compiled, row: list) -> M:
        for index, functions, col in compiled.converters:
            value = row[index]
            for convert in functions:
                value = convert(value, col, connection)
            row[index] = value
        main = compiled.parts[0]
        instance = _from_db(main, using, row[main.start : main.stop])
        attributes = instance.__dict__
        cache: dict[str, Any] = {}
        pending: dict[str, tuple[_Part, list, Any]] = {}
        for part in compiled.parts[1:]:
            values = row[part.start : part.stop]
            via: Field = part.via  # type: ignore[assignment]
            name = via.cache_name
            pk = None if part.pk_from_via is None else attributes[via.attname]
            marker = part.presence_offset
            if (marker is not None and values[marker] is None) or (
                part.pk_from_via is not None and pk is None
            ):
                cache[name] = None
            elif _without_init(part):
                pending[name] = (part, values, pk)
            else:  # init signals or a custom from_db: build now, as the ORM would
                cache[name] = _from_db(part, using, values, pk)
        instance._state.fields_cache = _RelationCache(using, cache, pending) if pending else cache
        return instance

    def _fields_of(self, model: type[Model], via: Field | None) -> list[Field]:
        """The columns to select for one part, in the model's field order."""
        if self.only is None:
            return list(model._meta.concrete_fields)
        wanted = self.only[None if via is None else via.name]
        return [field for field in model._meta.concrete_fields if field in wanted]

    def _compile(self, connection) -> _Compiled:
        quote = connection.ops.quote_name
        columns: list[str] = []
        parts: list[_Part] = []
        converters = []
        tables = [(self.model, "t0", None)] + [
            (fk.related_model, f"t{i}", fk) for i, fk in enumerate(self.related, start=1)
        ]
        utc_wall_clock = _reads_utc_wall_clock(connection)
        for model, alias, via in tables:
            start = len(columns)
            loaded = self._fields_of(model, via)
            presence_offset = pk_from_via = None
            if via is not None and via.target_field.primary_key:
                # The join is on the related primary key: its value is the foreign key's.
                # A LEFT JOIN still needs a never-NULL column to tell "no row" apart.
                others = [field for field in loaded if not field.primary_key]
                marker = next((i for i, f in enumerate(others) if not f.null), None)
                if not via.null or marker is not None:
                    loaded, pk_from_via = others, model._meta.pk.attname
                    presence_offset = marker if via.null else None
            if via is not None and via.null and pk_from_via is None:
                presence_offset = loaded.index(model._meta.pk)
            for field in loaded:
                col = field.get_col(alias)
                column = f"{alias}.{quote(field.column)}"
                found = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
                if utc_wall_clock and field.get_internal_type() == "DateTimeField":
                    column = f"({column} AT TIME ZONE 'UTC')"
                    found = [_attach_utc, *found]
                if found == [getattr(field, "from_db_value", None)] and isinstance(
                    field, JSONField
                ):
                    found = [_MemoizedJsonArrays(field.from_db_value)]
                if found:
                    converters.append((len(columns), tuple(found), col))
                columns.append(column)
            attnames = tuple(field.attname for field in loaded)
            plain = (
                model.__init__ is Model.__init__
                and model.from_db.__func__ is Model.from_db.__func__  # type: ignore[attr-defined]
            )
            parts.append(
                _Part(
                    model, start, len(columns), presence_offset, via, attnames, pk_from_via, plain
                )
            )
        joins = [
            f"{'LEFT OUTER' if fk.null else 'INNER'} JOIN {quote(fk.related_model._meta.db_table)}"
            f" t{i} ON t{i}.{quote(fk.target_field.column)} = t0.{quote(fk.column)}"
            for i, fk in enumerate(self.related, start=1)
        ]
        body = " ".join(
            [
                f"SELECT {', '.join(columns)}",
                f"FROM {quote(self.model._meta.db_table)} t0",
                *joins,
                f"WHERE t0.{quote(self.lookup_field.column)} = ",
            ]
        )
        prepare_and_execute = execute = execute_named = None
        if _can_prepare(connection):
            execute_named = f"EXECUTE {quote(self.name)}"
            execute = f"{execute_named}(%s)"
            prepare_and_execute = f"PREPARE {quote(self.name)} AS {body}$1; {execute}"
        return _Compiled(
            body + "%s",
            tuple(parts),
            tuple(converters),
            prepare_and_execute,
            execute,
            execute_named,
        )


class _RelationCache(dict):
    """A model's relation cache (`_state.fields_cache`) that builds related instances when read.

    The row holds the related columns, but building a model instance costs
    more than a request that never reads the relation should pay: a related
    instance is built on its first read (`instance.organization`), and then
    kept, as the ORM's cache keeps it. Django reads this mapping by key, tests
    membership, sets, deletes and copies it; every other view of it builds
    everything first. Only models that `_from_db` builds without `__init__` are
    deferred, so no init signal fires late.
    """

    __slots__ = ("_pending", "_using")

    def __init__(self, using: str, built: dict, pending: dict[str, tuple[_Part, list, Any]]):
        super().__init__(built)
        self._using = using
        self._pending = pending

    def __missing__(self, name: str):
        if name not in self._pending:
            raise KeyError(name)
        part, values, pk = self._pending.pop(name)
        related = _from_db(part, self._using, values, pk)
        dict.__setitem__(self, name, related)
        return related

    def __contains__(self, name: object) -> bool:
        return dict.__contains__(self, name) or name in self._pending

    def __setitem__(self, name: str, value: Any) -> None:
        self._pending.pop(name, None)
        dict.__setitem__(self, name, value)

    def __delitem__(self, name: str) -> None:
        if self._pending.pop(name, None) is None:  # a name is pending or built, never both
            dict.__delitem__(self, name)

    def _build_all(self) -> None:
        for name in list(self._pending):
            self.__missing__(name)

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self[name]
        except KeyError:
            return default

    def copy(self) -> dict:
        self._build_all()
        return dict(self)

    def __reduce__(self):
        return (dict, (self.copy(),))

    def __iter__(self):
        self._build_all()
        return dict.__iter__(self)

    def __len__(self) -> int:
        return dict.__len__(self) + len(self._pending)

    def __eq__(self, other: object) -> bool:
        self._build_all()
        return dict.__eq__(self, other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        self._build_all()
        return dict.__repr__(self)

    def keys(self):
        self._build_all()
        return dict.keys(self)

    def values(self):
        self._build_all()
        return dict.values(self)

    def items(self):
        self._build_all()
        return dict.items(self)


class _MemoizedJsonArrays:
    """A JSONField's `from_db_value`, parsing each JSON array of strings once per process.

    The hot paths read short arrays of strings on every request (a key's
    permissions and allowed origins), with few distinct texts: each text is
    parsed once, and every call still gets a list of its own. Any other value
    is converted as before; the memo is bounded.
    """

    __slots__ = ("arrays", "convert")
    MAX_ENTRIES = 256
    MAX_TEXT = 2048

    def __init__(self, convert: Callable[..., Any]) -> None:
        self.convert = convert
        self.arrays: dict[str, tuple[str, ...]] = {}

    def __call__(self, value, expression, connection):
        strings = self.arrays.get(value) if type(value) is str else None
        if strings is not None:
            return list(strings)
        parsed = self.convert(value, expression, connection)
        if (
            type(parsed) is list
            and len(value) <= self.MAX_TEXT
            and len(self.arrays) < self.MAX_ENTRIES
            and all(type(item) is str for item in parsed)
        ):
            self.arrays[value] = tuple(parsed)
        return parsed


#: Every JoinedRowSelect, so a settings change can make them compile again.
_selects: weakref.WeakSet[JoinedRowSelect] = weakref.WeakSet()


@receiver(setting_changed)
def _compile_again(*, setting: str, **kwargs) -> None:
    """The SQL and converters depend on these settings (override_settings in tests)."""
    if setting in ("DATABASES", "USE_TZ", "TIME_ZONE"):
        for select in list(_selects):
            select._compiled.clear()


def _without_init(part: _Part) -> bool:
    """Nothing could tell an instance built without `__init__` from one built with it."""
    if not (pre_init.receivers or post_init.receivers):
        return part.plain
    model = part.model
    return part.plain and not (pre_init.has_listeners(model) or post_init.has_listeners(model))


def _from_db(part: _Part, using: str, values: list, pk: Any = None) -> Model:
    """`Model.from_db`, without running `__init__` when nothing could observe the difference.

    For a model with Django's own `__init__` and `from_db` (`part.plain`) and
    no pre_init / post_init receivers, `__init__` only sets `_state` and one
    attribute per loaded column (a deferred field has no attribute); setting
    them directly is what deferred-field loading does too, at a fraction of the
    cost. Anything else goes through `from_db`. `pk` is the primary key when
    it was not selected (`part.pk_from_via`).
    """
    model = part.model
    if not _without_init(part):
        loaded = dict(zip(part.attnames, values, strict=True))
        if part.pk_from_via is not None:
            loaded[part.pk_from_via] = pk
        fields = model._meta.concrete_fields
        if len(loaded) == len(fields):
            return model.from_db(using, None, [loaded[field.attname] for field in fields])
        return model.from_db(
            using, list(loaded), [loaded[f.attname] for f in fields if f.attname in loaded]
        )
    instance = model.__new__(model)
    state = instance._state = ModelState()
    state.adding = False
    state.db = using
    attributes = instance.__dict__
    if part.pk_from_via is not None:
        attributes[part.pk_from_via] = pk
    attributes.update(zip(part.attnames, values, strict=False))  # same lengths, by _compile
    return instance


def _reads_utc_wall_clock(connection) -> bool:
    """Read PostgreSQL timestamps as UTC wall-clock time, then attach UTC in Python.

    Django loads `timestamptz` with a pure-Python loader; `timestamp` has
    psycopg's C loader, which is several times faster. Same instant, same
    tzinfo (the connection's, UTC), so the same value as the ORM's.
    """
    return (
        connection.vendor == "postgresql"
        and settings.USE_TZ
        and connection.timezone_name == "UTC"
        and connection.timezone is dt.UTC
    )


def _attach_utc(value, expression, connection):
    return value if value is None else value.replace(tzinfo=dt.UTC)


def _plain_literal(param: Any) -> str | None:
    """`param` as a SQL string literal when quoting it changes nothing, else None.

    With client-side binding psycopg writes every parameter into the statement
    as a quoted literal anyway; for a UUID, or text of ASCII letters and digits
    (a SHA-256 hex digest), that literal is the text between two quotes, so it
    is written here without psycopg's per-call conversion, which costs more
    than the lookup's own work. Anything else goes through psycopg.
    """
    if type(param) is uuid.UUID:
        return f"'{param}'"
    if type(param) is str and param.isascii() and param.isalnum():
        return f"'{param}'"
    return None


def _can_prepare(connection) -> bool:
    """SQL PREPARE/EXECUTE in one round trip needs psycopg 3 with client-side binding."""
    if connection.vendor != "postgresql":
        return False
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    return (
        is_psycopg3 and connection.settings_dict["OPTIONS"].get("server_side_binding") is not True
    )
