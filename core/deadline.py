"""A blocking call waited for at most so long, for calls that take no timeout of their own
(a name lookup) or whose timeout bounds each read, not the whole (a slow HTTP answer)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class DeadlinePassed(Exception):
    """The call had not returned when its time was up."""


def call_within(seconds: float, call: Callable[[], T], name: str) -> T:
    """`call()`'s result or exception, or DeadlinePassed after `seconds`. The call runs in a
    daemon thread named `name`; one still running at the deadline is abandoned: it ends on
    its own, or with the process, and its result is never used."""
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as exc:  # raised again below, in the caller's thread
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True, name=name)
    thread.start()
    thread.join(seconds)
    if not outcome:
        raise DeadlinePassed()
    if isinstance(outcome[0], Exception):
        raise outcome[0]
    return outcome[0]
