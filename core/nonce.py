"""One-time form nonces for dashboard forms that reveal a secret once (a key, a webhook secret).

A resubmitted POST (reload, back button, double click) must never create a
second secret: each such form carries a signed, user-bound random token that is
accepted once.
"""

from __future__ import annotations

import logging
import secrets

from django.core import signing
from django.core.cache import cache
from django.http import HttpRequest

from core import failopen

logger = logging.getLogger("sigsentry.dashboard")

NONCE_SALT = "sigsentry.dashboard.secret-form"
NONCE_MAX_AGE = 12 * 3600


def issue_nonce(request: HttpRequest) -> str:
    """A signed, user-bound random token for one secret-producing submission."""
    payload = {"u": str(request.principal.user.pk), "n": secrets.token_urlsafe(16)}
    return signing.dumps(payload, salt=NONCE_SALT)


def consume_nonce(request: HttpRequest) -> str:
    """`fresh` exactly once per issued nonce; then `used`. `invalid` if forged or stale.

    The first use is claimed with `cache.add`, which is atomic (one of two
    concurrent submissions wins) and shared by every process when the cache
    is Redis. If the cache is unreachable the submission counts as fresh: the
    worst case is a duplicate key, never a key shown twice. Like every Redis step
    it is not waited for again once one has given up in the request (`core.failopen`).
    """
    try:
        payload = signing.loads(
            request.POST.get("nonce", ""), salt=NONCE_SALT, max_age=NONCE_MAX_AGE
        )
    except signing.BadSignature:
        return "invalid"
    if not isinstance(payload, dict) or payload.get("u") != str(request.principal.user.pk):
        return "invalid"
    if failopen.given_up():
        return "fresh"
    try:
        claimed = cache.add(f"dashboard:nonce:{payload['n']}", 1, timeout=NONCE_MAX_AGE + 60)
    except Exception:
        logger.warning("nonce cache unavailable; treating the submission as fresh")
        failopen.gave_up("dashboard_nonce")
        return "fresh"
    return "fresh" if claimed else "used"
