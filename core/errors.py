"""Every `/v1` error as one JSON body: ``{"error": {"code", "message", "details"}}``.

Views and services raise `ApiError` subclasses; `api_exception_handler` turns
those, DRF's own exceptions and database outages into the SPEC §3 body. Error
bodies never echo the credential that was sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import DatabaseError, DataError, IntegrityError, InterfaceError, connection
from django.http import Http404, HttpResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from core import metrics
from core.principal import AUTH_DECISION

logger = logging.getLogger("core.errors")

WWW_AUTHENTICATE = 'Bearer realm="sigsentry"'
RETRY_AFTER_UNAVAILABLE = "5"


class ApiError(drf_exceptions.APIException):
    status_code = 400
    code = "VALIDATION_ERROR"
    message = "The request is invalid."

    def __init__(self, message: str | None = None, details: dict[str, Any] | None = None):
        self.message = message or self.message
        self.details = details or {}
        super().__init__(detail=self.message, code=self.code)


class AuthError(ApiError):
    """A 401. `bearer_error` is the RFC 6750 §3.1 error code its WWW-Authenticate
    challenge names: invalid_token for a credential that was refused, invalid_request
    for an Authorization header that is not `Bearer <token>`, none when no credential
    was sent."""

    status_code = 401
    bearer_error: str | None = "invalid_token"


class AuthenticationRequired(AuthError):
    code = "AUTHENTICATION_REQUIRED"
    message = "Send a credential: an Authorization header of Bearer and an API key or access token."
    bearer_error = None


class AuthorizationMalformed(AuthError):
    code = "AUTHORIZATION_MALFORMED"
    message = "The Authorization header must be 'Bearer <token>'."
    bearer_error = "invalid_request"


class KeyInvalid(AuthError):
    code = "KEY_INVALID"
    message = "This API key is not valid."


class KeyRevoked(AuthError):
    code = "KEY_REVOKED"
    message = "This API key was revoked."


class KeyExpired(AuthError):
    code = "KEY_EXPIRED"
    message = "This API key has expired."


class KeyFormatDeprecated(AuthError):
    code = "KEY_FORMAT_DEPRECATED"
    message = "Legacy API key formats stopped working at their sunset date. Mint a new key."


class TokenInvalid(AuthError):
    code = "TOKEN_INVALID"
    message = "The session token is not valid."


class TokenExpired(AuthError):
    code = "TOKEN_EXPIRED"
    message = "The session token has expired."


class InvalidCredentials(AuthError):
    code = "INVALID_CREDENTIALS"
    message = "The email or password is incorrect."
    bearer_error = None


class SignatureInvalid(AuthError):
    code = "SIGNATURE_INVALID"
    message = "The request signature is missing or does not verify."
    bearer_error = None  # no bearer credential was sent (SPEC §3: error= only when one was)


class ProjectIdRequired(ApiError):
    code = "PROJECT_ID_REQUIRED"
    message = "This endpoint needs an X-Project-Id header."


class ProjectIdInvalid(ApiError):
    code = "PROJECT_ID_INVALID"
    message = "X-Project-Id must be a project UUID."


class ProjectMismatch(ApiError):
    status_code = 403
    code = "PROJECT_MISMATCH"
    message = "This key belongs to another project than X-Project-Id names."


class ProjectNotFound(ApiError):
    status_code = 404
    code = "PROJECT_NOT_FOUND"
    message = "Project not found."


class PermissionDenied(ApiError):
    """A 403 whose `details.required` names what the caller lacks (SPEC §3): a permission
    (`config:write`), the least role that may (`role:admin`, `role:owner`:
    `core.permissions.REQUIRES_ADMIN`, `REQUIRES_OWNER`), a person's session (`SESSION`),
    the CSRF header (`CSRF_HEADER`), or `UNDECLARED` when nothing grants it (a handler that
    declared no permission, fail closed)."""

    status_code = 403
    code = "PERMISSION_DENIED"
    message = "You do not have permission to do this."

    #: What an API key lacks on an endpoint only a person's session may call.
    SESSION = "credential:session"
    #: What a cookie-authenticated unsafe request lacks without the CSRF token.
    CSRF_HEADER = "header:X-CSRFToken"
    #: Nothing grants it: the refusal of a handler, or of a library, that names no need.
    UNDECLARED = "undeclared"

    def __init__(self, required: str, message: str | None = None):
        if message is None:
            message = f"This needs the {required} permission."
        super().__init__(message, {"required": required})


class KeyManagementForbidden(ApiError):
    status_code = 403
    code = "KEY_MANAGEMENT_FORBIDDEN"
    message = "API keys cannot manage keys, organizations, projects or members."


class PermissionsLocked(ApiError):
    code = "PERMISSIONS_LOCKED"
    message = "SDK keys always have exactly analysis:create and analysis:read."


class ValidationFailed(ApiError):
    code = "VALIDATION_ERROR"
    message = "The request is invalid."

    def __init__(self, fields: dict[str, list[str]], message: str | None = None):
        super().__init__(message, {"fields": fields})


#: A body sent as anything but JSON (a form post, text/plain, no Content-Type).
NOT_SENT_AS_JSON = (
    "The request body must be sent as application/json (Content-Type: application/json)."
)


class NotFound(ApiError):
    status_code = 404
    code = "NOT_FOUND"
    message = "Not found."


class OriginNotAllowed(ApiError):
    status_code = 403
    code = "ORIGIN_NOT_ALLOWED"
    message = (
        "This key works only from the origins in its allowedOrigins (the browser's Origin header)."
    )


class IpNotAllowed(ApiError):
    status_code = 403
    code = "IP_NOT_ALLOWED"
    message = "This key may not be used from this IP address."


class LastOwner(ApiError):
    status_code = 409
    code = "LAST_OWNER"
    message = "An organization must keep at least one owner."


class RateLimited(ApiError):
    """A refusal for being over a limit. Every refusal creates exactly one (the API's 429,
    the dashboard's form error), so `sigsentry_rate_limited_total` is counted here."""

    status_code = 429
    code = "RATE_LIMITED"
    message = "Too many requests. Try again later."

    def __init__(self, retry_after: int, message: str | None = None):
        self.retry_after = max(1, int(retry_after))
        super().__init__(message)
        metrics.record_rate_limited()


class ServiceUnavailable(ApiError):
    status_code = 503
    code = "SERVICE_UNAVAILABLE"
    message = "The service is temporarily unavailable. Try again shortly."


#: Credential maskers (text in, text with every credential of one shape replaced out). The
#: apps that know a credential's shape register theirs from AppConfig.ready(): core knows none.
_MASKERS: list[Callable[[str], str]] = []


def never_echo(mask: Callable[[str], str]) -> None:
    """Run `mask` over every text of every error body from now on (`error_body`)."""
    if mask not in _MASKERS:
        _MASKERS.append(mask)


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        for mask in _MASKERS:
            value = mask(value)
        return value
    if isinstance(value, dict):
        return {_masked(key): _masked(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(item) for item in value]
    return value


def without_credentials(value: Any) -> Any:
    """`value` (a text, or the texts of a dict or list) with every credential of a registered
    shape masked, as error bodies are: for a log line that quotes a value a client sent (a
    key or token sent in the wrong place)."""
    return _masked(value)


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The SPEC §3 body, and the only place one is built.

    Invariant: no credential is echoed. Validators quote what they refuse, and a client
    may put its key in the wrong field, so the message and every string of `details`
    (keys too: a misspelled member's name is input) go through the registered maskers.
    """
    return {
        "error": {
            "code": code,
            "message": _masked(message),
            "details": _masked(details) if details else {},
        }
    }


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _flatten(detail: Any) -> list[str]:
    if isinstance(detail, dict):
        return [f"{k}: {m}" for k, v in detail.items() for m in _flatten(v)]
    if isinstance(detail, list):
        return [m for item in detail for m in _flatten(item)]
    return [str(detail)]


def validation_fields(detail: Any) -> dict[str, list[str]]:
    if isinstance(detail, dict):
        return {
            ("nonFieldErrors" if k == "non_field_errors" else _camel(str(k))): _flatten(v)
            for k, v in detail.items()
        }
    return {"nonFieldErrors": _flatten(detail)}


def is_outage(exc: BaseException | None) -> bool:
    """A database error that means "unreachable or broken", not "this value was refused"."""
    return isinstance(exc, DatabaseError | InterfaceError) and not isinstance(exc, DataError)


#: PostgreSQL's SQLSTATE for, among others, a prepared plan made stale by a migration.
FEATURE_NOT_SUPPORTED = "0A000"
#: PostgreSQL's SQLSTATEs of a transaction that lost to a concurrent one: a serialization
#: failure, a deadlock.
CONFLICT_STATES = frozenset({"40001", "40P01"})
#: Broken constraints no concurrent change causes: a NOT NULL or CHECK one is this
#: release's write against a schema it does not match (a column a later release added
#: without a database default), PostgreSQL's SQLSTATE or SQLite's message.
SCHEMA_MISMATCH_STATES = frozenset({"23502", "23514"})
SCHEMA_MISMATCH_MESSAGES = ("NOT NULL constraint failed", "CHECK constraint failed")


def _sqlstate(exc: BaseException | None) -> str | None:
    """The SQLSTATE of the driver's error Django's wraps (psycopg's, as `__cause__`)."""
    return getattr(getattr(exc, "__cause__", None), "sqlstate", None)


def is_conflict(exc: BaseException) -> bool:
    """A database error that is a race lost to a concurrent change (a constraint violated
    by a concurrent insert, a deadlock), not an outage: still a 503, since trying again
    succeeds, but logged as what it is, so it does not page anyone for an outage and does
    not hide the race (a race audit found two behind "database unavailable"). A NOT NULL or
    CHECK violation is no race: logged as an outage (found by a rolling-deploy audit)."""
    if isinstance(exc, IntegrityError):
        return _sqlstate(exc) not in SCHEMA_MISMATCH_STATES and not str(exc).startswith(
            SCHEMA_MISMATCH_MESSAGES
        )
    return _sqlstate(exc) in CONFLICT_STATES


def end_refusing_session(exc: BaseException | None) -> None:
    """After an outage error (every 503 calls this): end a session that can only fail again.

    PostgreSQL refuses a prepared statement whose result columns a migration changed
    ("cached plan must not change result type", SQLSTATE 0A000) for as long as its session
    lives: every request on that connection would fail until CONN_MAX_AGE. Closing the
    connection drops its plans; the next request connects and prepares afresh.
    """
    if _sqlstate(exc) == FEATURE_NOT_SUPPORTED:
        logger.warning("the database session refused a prepared plan: reconnecting")
        connection.close()


def log_outage(exc: BaseException, route: str | None = None) -> None:
    """One ERROR line for a database error answered 503: a conflict (`is_conflict`) or an
    outage, with the route when a page served it (the pages logged conflicts as outages
    too: found by an integrity audit)."""
    what = "conflict with a concurrent change" if is_conflict(exc) else "unavailable"
    if route is None:
        logger.error("database %s: %s", what, type(exc).__name__)
    else:
        logger.error("database %s while serving %s", what, route)


def _translate(exc: Exception) -> ApiError | None:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, DataError):  # a value the database refuses: bad input, not an outage
        logger.error("unvalidated input reached the database: %s", type(exc).__name__)
        return ValidationFailed({"body": ["A value cannot be stored."]})
    if is_outage(exc):
        log_outage(exc)
        end_refusing_session(exc)
        return ServiceUnavailable()
    if isinstance(exc, drf_exceptions.ValidationError):
        return ValidationFailed(validation_fields(exc.detail))
    if isinstance(exc, drf_exceptions.UnsupportedMediaType):
        # No 415 in SPEC §3: a 400 that says what to send, and on `body` what was sent.
        return ValidationFailed({"body": [str(exc.detail)]}, NOT_SENT_AS_JSON)
    if isinstance(exc, drf_exceptions.ParseError):
        return ValidationFailed({"body": [str(exc.detail)]}, str(exc.detail))
    if isinstance(exc, drf_exceptions.NotAuthenticated):
        return AuthenticationRequired()
    if isinstance(exc, drf_exceptions.AuthenticationFailed):
        return TokenInvalid()
    if isinstance(exc, drf_exceptions.MethodNotAllowed):
        err = ApiError("Method not allowed.")
        err.status_code, err.code = 405, "METHOD_NOT_ALLOWED"
        return err
    if isinstance(exc, drf_exceptions.Throttled):
        return RateLimited(int(exc.wait or 1))
    if isinstance(exc, drf_exceptions.NotFound | Http404):
        return NotFound()
    if isinstance(exc, drf_exceptions.PermissionDenied | DjangoPermissionDenied):
        return PermissionDenied(PermissionDenied.UNDECLARED, PermissionDenied.message)
    return None


def error_headers(err: ApiError) -> dict[str, str]:
    headers: dict[str, str] = {}
    if isinstance(err, AuthError):
        headers["WWW-Authenticate"] = (
            WWW_AUTHENTICATE
            if err.bearer_error is None
            else f'{WWW_AUTHENTICATE}, error="{err.bearer_error}"'
        )
    if isinstance(err, RateLimited):
        headers["Retry-After"] = str(err.retry_after)
    if isinstance(err, ServiceUnavailable):
        headers["Retry-After"] = RETRY_AFTER_UNAVAILABLE
    return headers


#: Refusals of the authentication and authorization steps (SPEC §4.9 `refused`).
REFUSALS = (
    AuthError,
    OriginNotAllowed,
    IpNotAllowed,
    ProjectMismatch,
    ProjectNotFound,
    ProjectIdRequired,
    ProjectIdInvalid,
    RateLimited,
    PermissionDenied,
    KeyManagementForbidden,
)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    err = _translate(exc)
    request = context.get("request")
    decision = request.META.get(AUTH_DECISION) if request is not None else None
    if decision is not None and decision.outcome == "ok" and isinstance(err, REFUSALS):
        # Refused after authentication (project, rate limit, permission): the request's
        # log line and the key's usage name the refusal.
        decision.outcome = err.code
    if err is None:
        logger.exception("unhandled error in API view", exc_info=exc)
        return Response(
            error_body("INTERNAL_ERROR", "Something went wrong on our side."), status=500
        )
    return Response(
        error_body(err.code, err.message, err.details),
        status=err.status_code,
        headers=error_headers(err),
    )


def json_error_response(err: ApiError) -> HttpResponse:
    """The SPEC §3 answer outside DRF's views (Django's 404 and 403 under `/v1`, the
    middleware's refusals), rendered by the renderer DRF's views answer with: the same bytes
    for the same error (compact, UTF-8), whichever layer refused (`JsonResponse` spaced
    them: found by an API audit)."""
    response = HttpResponse(
        JSONRenderer().render(error_body(err.code, err.message, err.details)),
        status=err.status_code,
        content_type=JSONRenderer.media_type,
    )
    for name, value in error_headers(err).items():
        response[name] = value
    response["Cache-Control"] = "no-store"
    return response
