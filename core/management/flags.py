"""Command-line flags the commands share."""

from __future__ import annotations

import argparse
import math

YEAR_SECONDS = 366 * 86400


def seconds_at_most(most: float):
    """An argparse type: a number of seconds, more than zero and at most `most` (a typo must
    not crash a command later: 1e308 overflowed the worker's first schedule, `nan` reached
    the HTTP client as a traceback)."""

    def seconds(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
        if math.isnan(value) or not 0 < value <= most:
            raise argparse.ArgumentTypeError(
                f"must be more than 0 and at most {most:g} seconds: {text!r}"
            )
        return value

    return seconds
