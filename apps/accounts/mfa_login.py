"""The `mfaToken` of a login's second step (SPEC §4.13).

A password login of a user with two-factor on answers an `mfaToken` instead of a
session. The token is signed (django.core.signing: HMAC-SHA256 under SECRET_KEY),
carries the user id, a random nonce and a fingerprint of the password hash (never the
hash itself), is valid 5 minutes, dies when the password changes, and finishes one
login only: its nonce is recorded in the cache, by its SHA-256, before its code is checked
(and removed again when the code is wrong).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import uuid
from datetime import timedelta
from typing import Any

from django.core import signing
from django.core.cache import cache

from apps.accounts.models import User
from core import failopen
from core.errors import InvalidCredentials

logger = logging.getLogger("sigsentry.accounts")

MFA_TOKEN_MAX_AGE = timedelta(minutes=5)
_MFA_TOKEN_SALT = "sigsentry.accounts.mfa-login"
MAX_MFA_TOKEN_LENGTH = 512
EXPIRED_LOGIN = "The login has expired. Log in again."


class MfaTokenInvalid(InvalidCredentials):
    """An mfaToken that is forged, expired, used or outdated: the login starts over."""

    message = EXPIRED_LOGIN


def _password_mark(user: User) -> str:
    """Changes with the password; a hash of its fingerprint, not the fingerprint itself."""
    return hashlib.sha256(user.password_fingerprint().encode()).hexdigest()[:16]


def issue_mfa_token(user: User) -> str:
    payload = {"u": str(user.pk), "n": secrets.token_urlsafe(16), "p": _password_mark(user)}
    return signing.dumps(payload, salt=_MFA_TOKEN_SALT)


def _used_key(nonce: str) -> str:
    return f"mfa-token-used:{hashlib.sha256(nonce.encode()).hexdigest()[:32]}"


def user_for_mfa_token(token: Any) -> tuple[User, str]:
    """The user an unexpired, unused mfaToken names, and its nonce; else INVALID_CREDENTIALS."""
    if not isinstance(token, str) or not token or len(token) > MAX_MFA_TOKEN_LENGTH:
        raise MfaTokenInvalid()
    try:
        payload = signing.loads(
            token, salt=_MFA_TOKEN_SALT, max_age=MFA_TOKEN_MAX_AGE.total_seconds()
        )
        user_id = uuid.UUID(str(payload["u"]))
        nonce, mark = str(payload["n"]), str(payload["p"])
    except (signing.BadSignature, KeyError, TypeError, ValueError) as exc:
        raise MfaTokenInvalid() from exc
    user = User.objects.filter(pk=user_id, is_active=True).first()
    if user is None or not hmac.compare_digest(mark, _password_mark(user)) or _was_used(nonce):
        raise MfaTokenInvalid()
    return user, nonce


# With the cache down a code is still accepted once per time step (`twofactor._accept_totp`, in the
# database), so these marks fail open, and are not waited for again once a Redis step has
# given up in the request (`core.failopen`).


def _was_used(nonce: str) -> bool:
    if failopen.given_up():
        return False
    try:
        return cache.get(_used_key(nonce)) is not None
    except Exception:
        _mark_unavailable()
        return False


def mark_mfa_token_used(nonce: str) -> bool:
    """Record the nonce; False if another request used this token first."""
    if failopen.given_up():
        return True
    try:
        return cache.add(_used_key(nonce), 1, timeout=int(MFA_TOKEN_MAX_AGE.total_seconds()) + 1)
    except Exception:
        _mark_unavailable()
        return True


def give_back_mfa_token(nonce: str) -> None:
    """Unused after all (a wrong or throttled code): the login may go on with it."""
    if failopen.given_up():
        return
    try:
        cache.delete(_used_key(nonce))
    except Exception:
        _mark_unavailable()  # the token stays used: the login starts over


def _mark_unavailable() -> None:
    logger.warning("two-factor token cache unavailable; the code stays single use")
    failopen.gave_up("mfa_token")
