"""The base of every project command (`manage.py flush_usage`, `reseal_secrets`, ...).

Django's `BaseCommand` prints a `CommandError` as one line on stderr and exits 1; any other
exception is a traceback. A database that is down is an operator's everyday error, not a
bug: with this base it is one line too, naming the setting to look at (a commands audit
found 70 to 100 lines ending in `OperationalError`). `--traceback` still shows the
traceback.
"""

from __future__ import annotations

import sqlite3

from django.conf import settings
from django.core.management import base
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from core import failopen

#: PostgreSQL's SQLSTATE for a table that does not exist (psycopg's `UndefinedTable`).
UNDEFINED_TABLE = "42P01"
MIGRATE_FIRST = "run `python manage.py migrate` first"


def _is_missing_table(exc: DatabaseError) -> bool:
    """Whether `exc` is a query on a table that does not exist: a database never migrated
    (or migrated by an older release). PostgreSQL says so by its code; SQLite only in words."""
    driver_error = exc.__cause__
    if getattr(driver_error, "sqlstate", None) == UNDEFINED_TABLE:
        return True
    return isinstance(driver_error, sqlite3.OperationalError) and str(driver_error).startswith(
        "no such table"
    )


def database_error_line(exc: DatabaseError) -> str:
    """One line for `exc`: "unreachable" when no connection could be opened, the first line
    of the driver's message, never the password (psycopg's messages name the host, port and
    user, not the password; hidden all the same should a driver ever quote it), and what to
    do when a table is missing (a commands audit: a database never migrated was only a
    "relation ... does not exist")."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    first = lines[0] if lines else type(exc).__name__
    password = settings.DATABASES[DEFAULT_DB_ALIAS].get("PASSWORD")
    if password:
        first = first.replace(password, "…")
    if _is_missing_table(exc):
        first += f"; {MIGRATE_FIRST}"
    connected = connections[DEFAULT_DB_ALIAS].connection is not None
    return f"database (DATABASE_URL) {'failed' if connected else 'unreachable'}: {first}"


class BaseCommand(base.BaseCommand):
    """Django's `BaseCommand`, with a database error as one line and `say()` for the lines
    that report success (silent with `-v 0`, for cron)."""

    verbosity = 1

    def execute(self, *args, **options):
        self.verbosity = options.get("verbosity", 1)
        try:
            with failopen.counted_in_database():  # no scrape reaches this process's memory
                return super().execute(*args, **options)
        except DatabaseError as exc:
            if options.get("traceback"):
                raise
            raise base.CommandError(database_error_line(exc)) from exc

    def say(self, text: str) -> None:
        """Write `text` to stdout unless the command was run with `-v 0`."""
        if self.verbosity > 0:
            self.stdout.write(text)
