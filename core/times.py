"""Times as the API and the pages write them: ISO 8601 in UTC, with a Z."""

from __future__ import annotations

from datetime import UTC


def iso(moment, timespec: str = "microseconds") -> str | None:
    """ISO 8601 UTC with a Z and always six fractional digits, as every time in the API
    (`2030-01-31T12:00:00.000000Z`): Python's own drops the fraction of a whole second,
    which broke fixed-format parsers once in a million rows (a dates audit). `timespec`
    as `datetime.isoformat`'s: HTML's `<time>` takes three digits at most."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")
