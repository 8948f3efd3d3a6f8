"""JWT session tokens (simplejwt), bound to an `AuthSession`.

Claims: ``iss``, ``aud``, ``exp``, ``iat``, ``jti``, ``typ`` (access|refresh),
``sub`` (user id) and ``sid`` (session id). HS256 is pinned on both signing and
verification, so `alg: none` and algorithm confusion are rejected. An access
token is accepted only while its session is open, its user active and the
user's password unchanged since login: one indexed query per request.

Refresh tokens are tracked in simplejwt's token blacklist by `jti` only; the
token text itself is never written to the database (it is a credential).
"""

from __future__ import annotations

import hmac
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from django.conf import settings
from django.utils import timezone
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from apps.accounts.models import AuthSession, User
from apps.accounts.selectors import session_with_user
from core.errors import TokenExpired, TokenInvalid
from core.principal import Principal

#: A JWT (base64url segments joined by dots, the first JSON starting `{"`) or an mfaToken
#: (Django's signing: JSON, a timestamp and a signature joined by colons), or either cut
#: short after its first part, is masked from its first `eyJ` whose segment ends in a dot or
#: colon to the end of its run of token characters. "…" too: a key masker that ran first
#: may have cut a `tb_…` out of the token. As one pattern (`eyJ[A-Za-z0-9_-]*[.:]…`) this
#: scanned to the run's end from every `eyJ` in it: a 16 KB header of `eyJeyJ…` cost 0.4 s
#: of CPU in the error body of an unauthenticated request (found by the DoS audit). A run
#: and its segments are read once each.
_RUN = re.compile(r"[A-Za-z0-9_.:\-…]+")
_SEGMENT_END = re.compile(r"[.:…]")


def _mask_run(run: re.Match) -> str:
    text, start = run[0], 0
    if "eyJ" not in text:
        return text
    for end in _SEGMENT_END.finditer(text):
        at = text.find("eyJ", start, end.start())
        if at >= 0 and end[0] != "…":
            return f"{text[:at]}eyJ…"
        start = end.end()
    return text


def mask_tokens(text: str) -> str:
    """`text` with every session token (access, refresh, MFA) in it replaced by "eyJ…"."""
    return _RUN.sub(_mask_run, text) if "eyJ" in text else text


ACCESS_LIFETIME = timedelta(hours=24)
#: The longest bearer credential (API key or JWT) the service reads; longer is refused unread.
MAX_CREDENTIAL_LENGTH = 4096
ALGORITHM = "HS256"
_REQUIRED_CLAIMS = ["exp", "iat", "jti", "iss", "aud", "sub", "sid", "typ"]


@dataclass(frozen=True, slots=True)
class TokenPair:
    access: str
    refresh: str
    access_expires_at: datetime
    refresh_expires_at: datetime


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def issue_pair(
    session: AuthSession, refresh_jti: str, now: datetime | None = None, *, record: bool = True
) -> TokenPair:
    """Sign a new access/refresh pair for `session`; neither outlives the session's cap.
    `record=False`: the refresh jti is one already issued (its outstanding row exists)."""
    now = now or timezone.now()
    refresh = RefreshToken()
    refresh[jwt_settings.JTI_CLAIM] = refresh_jti
    refresh_expires_at = min(now + jwt_settings.REFRESH_TOKEN_LIFETIME, session.expires_at)
    refresh.set_iat(at_time=now)
    refresh.payload["exp"] = _epoch(refresh_expires_at)
    refresh["sub"] = str(session.user_id)
    refresh["sid"] = str(session.id)

    access = AccessToken()
    access.set_iat(at_time=now)
    access_expires_at = min(now + ACCESS_LIFETIME, session.expires_at)
    access.payload["exp"] = _epoch(access_expires_at)
    access["sub"] = str(session.user_id)
    access["sid"] = str(session.id)

    if record:
        OutstandingToken.objects.create(
            user_id=session.user_id,
            jti=refresh_jti,
            token="",  # the token is a credential: keep only its jti
            created_at=now,
            expires_at=refresh_expires_at,
        )
    return TokenPair(
        access=str(access),
        refresh=str(refresh),
        access_expires_at=datetime.fromtimestamp(_epoch(access_expires_at), tz=UTC),
        refresh_expires_at=datetime.fromtimestamp(_epoch(refresh_expires_at), tz=UTC),
    )


def new_jti() -> str:
    return uuid.uuid4().hex


def decode(token: str, expected_type: str) -> dict:
    """Verify signature (HS256 only), issuer, audience, expiry and token type."""
    try:
        claims = jwt.decode(
            token,
            settings.JWT_SIGNING_KEY,
            algorithms=[ALGORITHM],
            audience=jwt_settings.AUDIENCE,
            issuer=jwt_settings.ISSUER,
            # `iat` decides nothing here (the session row does), and PyJWT refuses a token
            # "issued" later than this host's clock: a pair from a web host whose clock runs
            # a second ahead logged the dashboard out here.
            options={"require": _REQUIRED_CLAIMS, "verify_iat": False},
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenExpired() from exc
    except jwt.PyJWTError as exc:
        raise TokenInvalid() from exc
    if claims.get("typ") != expected_type:
        raise TokenInvalid()
    return claims


def session_for_claims(claims: dict, now: datetime | None = None) -> AuthSession:
    """The open session the claims name, with its user; TOKEN_INVALID otherwise. One query.

    Read from the database on every call (no cache): logout, password change
    and deactivation end the session for the next request on every process.
    """
    try:
        session_id = uuid.UUID(str(claims["sid"]))
    except ValueError as exc:
        raise TokenInvalid() from exc
    session = session_with_user(session_id)
    if session is None:
        raise TokenInvalid()
    if not session_is_valid(session, str(claims["sub"]), now):
        raise TokenInvalid()
    return session


def principal_for_access(token: str) -> tuple[Principal, dict]:
    """The caller an access token names (its open session's user) and the token's claims:
    the JWT check of the API's `Authorization` header, its cookie, and the dashboard's."""
    claims = decode(token, "access")
    session = session_for_claims(claims)
    return Principal(user=session.user, session=session), claims


def session_is_valid(session: AuthSession, subject: str, now: datetime | None = None) -> bool:
    now = now or timezone.now()
    user: User = session.user
    return (
        session.ended_at is None
        and session.expires_at > now
        and str(session.user_id) == subject
        and user.is_active
        and session_fingerprint_matches(session, user)
    )


def session_fingerprint(user: User) -> str:
    """Changes whenever the password does (`User.password_fingerprint`)."""
    return user.password_fingerprint()


def session_fingerprint_matches(session: AuthSession, user: User) -> bool:
    return hmac.compare_digest(session.password_fingerprint, session_fingerprint(user))


def rotated_out_at(jti: str) -> datetime | None:
    """When the refresh token `jti` was rotated out (blacklisted); None if it never was."""
    return (
        BlacklistedToken.objects.filter(token__jti=jti)
        .values_list("blacklisted_at", flat=True)
        .first()
    )


def blacklist_jti(jti: str) -> None:
    outstanding = OutstandingToken.objects.filter(jti=jti).first()
    if outstanding is not None:
        BlacklistedToken.objects.get_or_create(token=outstanding)
