"""Lists in messages: the first few, then how many more."""

from __future__ import annotations

from collections.abc import Sequence

#: How many items a message names before "... and N more".
MOST_NAMED = 20


def first_few(items: Sequence[str], most: int = MOST_NAMED, *, more: str = "more") -> list[str]:
    """The first `most` of `items`, then "... and N more" if there are more: a message that
    names every row of a large table is one unreadable line (a commands audit found 165 KB
    from `reseal_secrets`)."""
    hidden = len(items) - most
    if hidden <= 0:
        return list(items)
    return [*items[:most], f"... and {hidden} {more}"]
