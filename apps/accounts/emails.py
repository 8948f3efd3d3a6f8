"""One spelling per email address, for every comparison and throttle that names an account."""

from __future__ import annotations

import unicodedata


def normalize_email(value: str) -> str:
    """NFKC, then case-folded: look-alike spellings (long s, full-width letters) are one address."""
    return unicodedata.normalize("NFKC", value.strip()).casefold()
