"""Times as the API and the pages write them: ISO 8601 in UTC, with a Z."""

from __future__ import annotations

import math
from datetime import UTC


def iso(moment, timespec: str = "microseconds") -> str | None:
    """ISO 8601 UTC with a Z and always six fractional digits, as every time in the API
    (`2030-01-31T12:00:00.000000Z`): Python's own drops the fraction of a whole second,
    which broke fixed-format parsers once in a million rows (a dates audit). `timespec`
    as `datetime.isoformat`'s: HTML's `<time>` takes three digits at most."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def wait_phrase(seconds: int) -> str:
    """A wait as people read it, never shorter than the real one: "about 2 minutes" for
    89 s (rounded, "about 1 minute" sent people back too soon, to be refused again), and
    a wait of an hour or more in hours, not "about 60 minutes"."""
    minutes = max(1, math.ceil(seconds / 60))
    count, unit = (math.ceil(minutes / 60), "hour") if minutes >= 60 else (minutes, "minute")
    return f"about {count} {unit}{'' if count == 1 else 's'}"
