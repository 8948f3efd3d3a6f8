"""The one authentication entry point for `/v1`.

A bearer credential is routed by its shape (SPEC §2): API-key prefixes to the
key path, JWT-shaped text to the session path, anything else is KEY_INVALID.
Checks run in SPEC §3's order: header shape → prefix → legacy sunset →
checksum → one database lookup → revoked → expired (project resolution and
permission follow in the view). Malformed, checksum-failing and sunset legacy
credentials are rejected without a database query.

Every request comes through here, so the path is kept lean: one precompiled
statement reads the key with its organization and project
(`selectors.key_by_digest`, see `core.rawselect`), or the session with its
user for a JWT; nothing about a credential's validity is cached in the process,
so a revocation or logout applies to the next request on every process.

Credentials are read from the `Authorization` header only, never from the
query string. The dashboard's HttpOnly access cookie is accepted when no
header is sent, and then unsafe methods must pass Django's CSRF check.
"""

from __future__ import annotations

import functools
import logging
import re

from django.conf import settings
from django.middleware.csrf import CsrfViewMiddleware
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication

from apps.accounts import tokens
from apps.apikeys import keyformat
from apps.apikeys.keyformat import Shape
from apps.apikeys.selectors import key_by_digest
from apps.orgs.access import Principal
from core import throttling
from core.errors import (
    ApiError,
    AuthError,
    AuthorizationMalformed,
    KeyExpired,
    KeyFormatDeprecated,
    KeyInvalid,
    KeyRevoked,
    OriginNotAllowed,
    RateLimited,
    TokenInvalid,
)
from core.errors import PermissionDenied as CsrfFailed
from core.logging import log_fields
from core.net import client_ip

logger = logging.getLogger("sigsentry.auth")
#: str(uuid) builds the text anew each time; the same few ids recur on every request.
id_text = functools.lru_cache(maxsize=4096)(str)

ACCESS_COOKIE = "ss_access"
REFRESH_COOKIE = "ss_refresh"
MAX_CREDENTIAL_LENGTH = 4096
# RFC 6750 §2.1: "Bearer" 1*SP b64token; the scheme is case-insensitive.
_BEARER = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9\-._~+/]+=*)")


class _CsrfCheck(CsrfViewMiddleware):
    def _reject(self, request, reason):
        return reason


def enforce_csrf(request) -> None:
    check = _CsrfCheck(lambda req: None)
    check.process_request(request)
    reason = check.process_view(request, None, (), {})
    if reason:
        raise CsrfFailed(message="CSRF check failed: send the X-CSRFToken header.")


def parse_authorization(header: str) -> str:
    """The credential of a well-formed `Bearer <token>` header, or AUTHORIZATION_MALFORMED."""
    if len(header) > MAX_CREDENTIAL_LENGTH + 16:
        raise AuthorizationMalformed()
    match = _BEARER.fullmatch(header.strip(" "))
    if match is None:
        raise AuthorizationMalformed()
    return match.group(1)


def log_decision(request, outcome: str, principal: Principal | None = None) -> None:
    """One structured line per authentication decision; never a credential or digest.

    Runs on every request: nothing is computed when INFO is off for this
    logger, and the record is built by `log_fields` (no caller lookup). The
    message is short ("auth ok", "auth KEY_REVOKED"); who and from where are
    the record's fields.
    """
    if not logger.isEnabledFor(logging.INFO):
        return
    fields = {"auth_outcome": outcome, "client_ip": client_ip(request)}
    if principal is not None and principal.key is not None:
        fields["key_id"] = id_text(principal.key.id)
        fields["key_prefix"] = principal.key.prefix
    elif principal is not None and principal.user is not None:
        fields["user_id"] = id_text(principal.user.id)
    log_fields(logger, logging.INFO, "auth %s", (outcome,), fields)


def authenticate_key(credential: str, shape: Shape, request) -> Principal:
    if shape is Shape.LEGACY_KEY:
        if timezone.now() >= settings.LEGACY_KEYS_SUNSET_AT:
            raise KeyFormatDeprecated()
        if not keyformat.is_legacy_key(credential):
            raise KeyInvalid()
    elif not keyformat.is_valid_key(credential):
        raise KeyInvalid()
    digest = keyformat.digest(credential)
    api_key = key_by_digest(digest)
    if api_key is None or not keyformat.digests_match(api_key.digest, digest):
        raise KeyInvalid()
    if api_key.revoked_at is not None:
        raise _refusing(KeyRevoked(), api_key)
    if api_key.expires_at is not None and api_key.expires_at <= timezone.now():
        raise _refusing(KeyExpired(), api_key)
    origin = request.META.get("HTTP_ORIGIN")
    if api_key.allowed_origins and (
        origin is None or origin.lower() not in api_key.allowed_origins
    ):
        raise _refusing(OriginNotAllowed(), api_key)
    return Principal(key=api_key)


def _refusing(err: ApiError, api_key) -> ApiError:
    """Attach the known key to a refusal so the decision's log line names it."""
    err.api_key = api_key
    return err


def authenticate_jwt(credential: str) -> Principal:
    claims = tokens.decode(credential, "access")
    session = tokens.session_for_claims(claims)
    return Principal(user=session.user, session=session)


class BearerAuthentication(BaseAuthentication):
    """DRF authentication for every `/v1` view. See the module docstring."""

    def authenticate(self, request):
        header = request._request.META.get("HTTP_AUTHORIZATION")
        try:
            if header is None:
                cookie = request._request.COOKIES.get(ACCESS_COOKIE)
                if not cookie:
                    return None
                principal = self._from_cookie(request, cookie)
            else:
                principal = self._from_header(request, parse_authorization(header))
        except (AuthError, OriginNotAllowed) as err:
            if isinstance(err, OriginNotAllowed):
                request._request.sigsentry_origin_denied = True
            api_key = getattr(err, "api_key", None)
            refused_key = Principal(key=api_key) if api_key is not None else None
            try:
                self._count_failure(request)
            except RateLimited as limited:
                log_decision(request, limited.code, refused_key)
                raise
            log_decision(request, err.code, refused_key)
            raise
        log_decision(request, "ok", principal)
        request._request.sigsentry_principal = principal
        return principal, principal.key or principal.session

    def _from_header(self, request, credential: str) -> Principal:
        if len(credential) > MAX_CREDENTIAL_LENGTH:
            raise AuthorizationMalformed()
        shape = keyformat.shape_of(credential)
        if shape is Shape.JWT:
            return authenticate_jwt(credential)
        if shape is Shape.NOT_A_CREDENTIAL:
            raise KeyInvalid()
        return authenticate_key(credential, shape, request)

    def _from_cookie(self, request, cookie: str) -> Principal:
        if len(cookie) > MAX_CREDENTIAL_LENGTH or keyformat.shape_of(cookie) is not Shape.JWT:
            raise TokenInvalid()
        principal = authenticate_jwt(cookie)
        if request.method not in ("GET", "HEAD", "OPTIONS", "TRACE"):
            enforce_csrf(request._request)
        return principal

    def _count_failure(self, request) -> None:
        """Failed credentials per client IP: past the limit, failures answer 429.

        Only failures are counted and only failures are throttled, so a valid
        key is never locked out by someone else's failures.
        """
        retry_after = throttling.hit("failed_auth_ip", client_ip(request))
        if retry_after is not None:
            raise RateLimited(retry_after)

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="sigsentry"'
