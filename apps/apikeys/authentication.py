"""The one authentication entry point for `/v1`.

A bearer credential is routed by its shape (SPEC §2): API-key prefixes to the
key path, JWT-shaped text to the session path, anything else is KEY_INVALID.
Checks run in SPEC §3's order: header shape → prefix → legacy sunset →
checksum → one database lookup → revoked → expired → origin → IP (project,
rate limit and permission follow in the view, SPEC §4.10). Malformed, checksum-failing and
sunset legacy credentials are rejected without a database query.

Speed comes from what is decided, not from internals: the checksum before any
query, one indexed lookup by SHA-256 digest (`selectors.key_by_digest`, one
parameterized statement), no password hash, and nothing about a credential's
validity cached in the process, so a revocation or logout applies to the next
request on every process.

Every decision (accepted or refused, and the key or user it names) is left in
`request.META["sigsentry.auth"]` (a WSGI environ extension key): the request's
one access-log line carries it, and the key app's middleware records the key's
use after the response. No credential or digest is ever part of it.

Credentials are read from the `Authorization` header only, never from the
query string. The dashboard's HttpOnly access cookie is accepted when no
header is sent, and then unsafe methods must pass Django's CSRF check.
"""

from __future__ import annotations

import re

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication

from apps.accounts import tokens
from apps.accounts.cookies import ACCESS_COOKIE, enforce_csrf
from apps.accounts.services import touch_session
from apps.accounts.tokens import MAX_CREDENTIAL_LENGTH
from apps.apikeys import keyformat
from apps.apikeys.gate.steps import refused_key_window
from apps.apikeys.keyformat import Shape
from apps.apikeys.selectors import KeyRecord, key_by_digest
from core import throttling
from core.errors import (
    ApiError,
    AuthError,
    AuthorizationMalformed,
    IpNotAllowed,
    KeyExpired,
    KeyFormatDeprecated,
    KeyInvalid,
    KeyRevoked,
    OriginNotAllowed,
    PermissionDenied,
    RateLimited,
    ServiceUnavailable,
    TokenInvalid,
    is_outage,
)
from core.net import client_ip, client_refusal
from core.principal import AUTH_DECISION, AuthDecision, Principal

# RFC 6750 §2.1: "Bearer" 1*SP b64token; the scheme is case-insensitive.
_BEARER = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9\-._~+/]+=*)")


def parse_authorization(header: str) -> str:
    """The credential of a well-formed `Bearer <token>` header, or AUTHORIZATION_MALFORMED."""
    if len(header) > MAX_CREDENTIAL_LENGTH + 16:
        raise AuthorizationMalformed()
    match = _BEARER.fullmatch(header.strip(" "))
    if match is None:
        raise AuthorizationMalformed()
    return match.group(1)


def authenticate_key(credential: str, shape: Shape, request) -> Principal:
    """The key's principal, or the SPEC §3 refusal (carrying the key once it is known)."""
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
    refusal = client_refusal(request, api_key.allowed_origins, api_key.allowed_ips)
    if refusal is not None:
        raise _refusing(refusal(), api_key)
    return Principal(key=api_key)


def _refusing(err: ApiError, api_key: KeyRecord) -> ApiError:
    """Attach the known key to a refusal so the decision names it."""
    err.api_key = api_key
    return err


class BearerAuthentication(BaseAuthentication):
    """DRF authentication for every `/v1` view. See the module docstring."""

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION")
        try:
            return self._authenticate(request, header)
        except DatabaseError as err:
            if is_outage(err):  # the 503's log line and metrics say the credential was unread
                request.META[AUTH_DECISION] = AuthDecision(ServiceUnavailable.code)
            raise

    def _authenticate(self, request, header: str | None):
        try:
            if header is None:
                cookie = request.COOKIES.get(ACCESS_COOKIE)
                if not cookie:
                    return None
                principal = self._from_cookie(request, cookie)
            else:
                principal = self._from_header(request, parse_authorization(header))
        except (AuthError, OriginNotAllowed, IpNotAllowed) as err:
            decision = AuthDecision(err.code, key=getattr(err, "api_key", None))
            request.META[AUTH_DECISION] = decision
            # a refused rate-limited key's window (its headers) is read in the same round trip
            along = None if decision.key is None else refused_key_window(request, decision.key)
            retry_after = throttling.hit("failed_auth_ip", client_ip(request), along)
            if retry_after is not None:
                # Failed credentials per client IP: only failures are counted and refused,
                # so a valid key is never locked out by someone else's failures.
                decision.outcome = RateLimited.code
                raise RateLimited(retry_after) from err
            raise
        request.META[AUTH_DECISION] = AuthDecision(
            "ok", key=principal.key, user=principal.user, accepted=True
        )
        if principal.session is not None:
            touch_session(principal.session, request)  # last seen: at most one write a minute
        return principal, principal.key or principal.session

    def _from_header(self, request, credential: str) -> Principal:
        if len(credential) > MAX_CREDENTIAL_LENGTH:
            raise AuthorizationMalformed()
        shape = keyformat.shape_of(credential)
        if shape is Shape.JWT:
            return tokens.principal_for_access(credential)[0]
        if shape is Shape.NOT_A_CREDENTIAL:
            raise KeyInvalid()
        return authenticate_key(credential, shape, request)

    def _from_cookie(self, request, cookie: str) -> Principal:
        if len(cookie) > MAX_CREDENTIAL_LENGTH or keyformat.shape_of(cookie) is not Shape.JWT:
            raise TokenInvalid()
        principal = tokens.principal_for_access(cookie)[0]
        if request.method not in ("GET", "HEAD", "OPTIONS", "TRACE"):
            try:
                enforce_csrf(request)
            except PermissionDenied as err:  # the decision names the user it refused
                request.META[AUTH_DECISION] = AuthDecision(err.code, user=principal.user)
                raise
        return principal

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="sigsentry"'
