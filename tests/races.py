"""Races staged, not hoped for.

The first call is held inside its transaction just after a given statement, the second
starts and either finishes or waits for a lock, and only then is the first let go: the
second meets the first's uncommitted change and its locks every time. PostgreSQL says
whether a session waits for a lock; on SQLite (one writer at a time: every transaction
takes the write lock as it begins) a second call still running after half a second is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import connection

SQLITE_WAIT = 0.5  # seconds a second call runs on SQLite before it is taken to wait


def backend_pid() -> int:
    if connection.vendor != "postgresql":
        return 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def waits_for_a_lock(pid: int) -> bool:
    if connection.vendor != "postgresql":
        return False  # race() times the call instead
    with connection.cursor() as cursor:
        cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
        row = cursor.fetchone()
    return row is not None and row[0] == "Lock"


class Call(threading.Thread):
    """`fn` on a connection of its own; with `held_after`, held inside its transaction just
    after the first statement that starts with that text (or that it accepts, when it is a
    function of the SQL), until `let_go()`."""

    def __init__(
        self, fn: Callable[[], Any], held_after: str | Callable[[str], bool] | None = None
    ) -> None:
        super().__init__(daemon=True)
        self.fn, self.held_after = fn, held_after
        self.connected, self.held = threading.Event(), threading.Event()
        self._go = threading.Event()
        self.pid = 0
        self.result: Any = None
        self.error: Exception | None = None

    def _hold(self, execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if self.held_after and not self.held.is_set() and self._holds_after(sql):
            self.held.set()
            self._go.wait(timeout=5)
        return result

    def _holds_after(self, sql: str) -> bool:
        if callable(self.held_after):
            return self.held_after(sql)
        return sql.startswith(self.held_after)

    def run(self) -> None:
        try:
            self.pid = backend_pid()
            self.connected.set()
            with connection.execute_wrapper(self._hold):
                self.result = self.fn()
        except Exception as exc:
            self.error = exc
        finally:
            connection.close()

    def let_go(self) -> None:
        self._go.set()


def race(first: Call, second: Call, *, second_waits: bool = False) -> None:
    """Hold `first` after its write, run `second` until it is done or waits for a lock
    (`second_waits`: it must wait), then let `first` finish; both are done on return."""
    first.start()
    assert first.held.wait(timeout=5), first.error
    second.start()
    assert second.connected.wait(timeout=5)
    started = time.monotonic()
    deadline = started + 5
    while not waits_for_a_lock(second.pid):
        if connection.vendor != "postgresql" and time.monotonic() - started > SQLITE_WAIT:
            break  # still running: waiting for the first's write lock
        assert second.is_alive() or not second_waits, "the second call never waited"
        if not second.is_alive():
            break
        assert time.monotonic() < deadline, "the second call neither finished nor waited"
        time.sleep(0.01)
    first.let_go()
    first.join(timeout=5)
    second.join(timeout=5)
    assert not first.is_alive() and not second.is_alive()


def race_for_the_last_place(first_call, second_call, *, held_after: str) -> tuple:
    """Two calls at once with room for one more: the first held after `held_after` (its
    write) until the second waits for the bound's lock; both results (neither raised)."""
    first = Call(first_call, held_after=held_after)
    second = Call(second_call)
    race(first, second, second_waits=True)
    assert first.error is None and second.error is None, (first.error, second.error)
    return first.result, second.result
