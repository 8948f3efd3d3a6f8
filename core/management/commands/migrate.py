"""Django's `migrate`, made safe to run while the release before serves (README, Upgrading).

On PostgreSQL, before anything is applied:

* **PostgreSQL itself, not a pooler.** Through PgBouncer in transaction mode a session's
  settings (`lock_timeout`) reach whichever client gets the server connection next, and
  `PGOPTIONS` is refused at connect. `migrate` stops with what to do instead.
* **Lock waits bounded.** A migration waits for its table's lock behind any long
  transaction, and every key check queues behind the migration meanwhile (the upgrade
  audit: key checks refused for 15 to 23 s). A session given no `lock_timeout` (by
  `PGOPTIONS` or the role) gets `LOCK_TIMEOUT`; a migration that hits it stops with one
  line saying to run `migrate` again, not a traceback. Each migration is a transaction of
  its own or, `atomic = False`, made of steps that can run again (`core.backfill`,
  `core.online_schema`).
"""

from __future__ import annotations

import psycopg
from django.core.management.base import CommandError
from django.core.management.commands import migrate
from django.db import OperationalError, connections

from core.postgres.base import behind_a_pooler

#: What a session with no `lock_timeout` of its own waits at most for a lock.
LOCK_TIMEOUT = "5s"

THROUGH_A_POOLER = (
    "migrate must reach PostgreSQL itself, not a pooler: a session's lock_timeout would "
    "pass to other clients' transactions. Run it with DATABASE_URL set to the database's own "
    "address (README: Production, Upgrading)."
)


class Command(migrate.Command):
    help = (
        f"{migrate.Command.help} On PostgreSQL: refuses a pooler, and waits at most "
        f"{LOCK_TIMEOUT} for a lock unless the session has a lock_timeout of its own."
    )

    def handle(self, *args, **options):
        connection = connections[options["database"]]
        if connection.vendor != "postgresql":
            return super().handle(*args, **options)
        connection.ensure_connection()
        if behind_a_pooler(connection.connection):
            raise CommandError(THROUGH_A_POOLER)
        with connection.cursor() as cursor:
            cursor.execute("SHOW lock_timeout")
            (bound,) = cursor.fetchone()
            if bound in ("0", "0ms"):
                cursor.execute("SELECT set_config('lock_timeout', %s, false)", [LOCK_TIMEOUT])
                bound = LOCK_TIMEOUT
        try:
            return super().handle(*args, **options)
        except OperationalError as exc:
            if not isinstance(exc.__cause__, psycopg.errors.LockNotAvailable):
                raise
            raise CommandError(
                f"a migration waited {bound} for a lock a running transaction holds, and "
                "stopped (lock_timeout); those before it stay applied (showmigrations). Run "
                "migrate again, or end the long transaction first (pg_stat_activity)."
            ) from exc
