"""Cross-cutting HTTP behaviour: the access log and request metrics, fail closed on database
outages, security headers, body size."""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponsePermanentRedirect,
)
from django.middleware.gzip import GZipMiddleware
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import Resolver404, resolve

from core import failopen, metrics
from core.errors import (
    NotFound,
    ServiceUnavailable,
    ValidationFailed,
    end_refusing_session,
    is_outage,
    json_error_response,
    log_outage,
)
from core.logging import ACCESS_LOGGER, REQUEST_ID_META, new_request_id, request_route, serving
from core.net import client_ip
from core.principal import AUTH_DECISION
from core.wsgi import CHUNKED_BODY_TOO_LARGE

logger = logging.getLogger("core.errors")
access_logger = logging.getLogger(ACCESS_LOGGER)

API_PREFIX = "/v1/"
REQUEST_ID_HEADER = "X-Request-Id"

# Pages (the dashboard, the admin, the API docs): scripts and styles only from our own
# origin, no inline code (Django 5.2's admin has none; the docs page's style is a file).
DASHBOARD_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
API_CSP = "default-src 'none'; frame-ancestors 'none'"


def is_api_path(path: str) -> bool:
    return path.startswith(API_PREFIX) or path == "/v1"


def unavailable_response(request: HttpRequest) -> HttpResponse:
    if is_api_path(request.path):
        return json_error_response(ServiceUnavailable())
    try:
        body = render_to_string("errors/503.html", request=None)
    except Exception:
        body = "<h1>SigSentry is temporarily unavailable</h1><p>Please try again shortly.</p>"
    response = HttpResponse(body, status=503)
    response["Retry-After"] = "5"
    response["Cache-Control"] = "no-store"
    return response


class AccessLogMiddleware:
    """One JSON line per request, carrying the authentication decision, and the same
    request in the Prometheus series (`core.metrics`, when METRICS_TOKEN is set).

    `method`, `route` (the URL pattern, so tokens in paths such as
    `/reset/<token>/` are never written; when nothing matched, the path with its long
    segments masked: `core.logging.request_route`),
    `status`, `duration_ms`, `client_ip`, and for `/v1` requests the decision:
    `auth_outcome` with `key_id` + `key_prefix` or `user_id`, and `request_id`. Never a
    credential, digest or query string. It replaces a separate decision line and
    the server's own access line: nothing on the request path is written twice.
    The metrics take the route pattern (or `static` / `unmatched`) and the
    decision's outcome, never a key, user, path or IP.

    Every answer carries its request's id in `X-Request-Id`, and every line written while
    it is served its `request_id` (`core.logging.RequestIdFilter`). The id is always ours:
    one a client sends is not taken, it would let it write what it likes into the logs.
    """

    def __init__(self, get_response):
        self.get_response = get_response
        self.static_prefix = "/" + settings.STATIC_URL.lstrip("/")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        failopen.new_request()  # a Redis that gave up on the last request is tried again
        request_id = request.META[REQUEST_ID_META] = new_request_id()
        with serving(request_id):
            response = self.get_response(request)
            if response.status_code == 404 and settings.DEBUG and _debug_page(request, response):
                response = json_error_response(NotFound())
            response[REQUEST_ID_HEADER] = request_id
            if metrics.enabled():
                self.record_metrics(request, response, time.perf_counter() - started)
            if access_logger.isEnabledFor(logging.INFO):
                fields = access_fields(request, response, started) | {"request_id": request_id}
                access_logger.info(
                    "%s %s %s", fields["method"], fields["route"], fields["status"], extra=fields
                )
        return response

    def record_metrics(self, request: HttpRequest, response: HttpResponse, seconds: float) -> None:
        match = request.resolver_match or self.unresolved_match(request, response)
        if match is not None:
            route = match.route
        elif request.path_info.startswith(self.static_prefix):
            route = "static"
        else:
            route = "unmatched"
        metrics.record_request(route, request.method, response.status_code, seconds)
        decision = request.META.get(AUTH_DECISION)
        if decision is not None:
            metrics.record_auth_decision(decision.outcome)

    @staticmethod
    def unresolved_match(request: HttpRequest, response: HttpResponse):
        """The URL pattern of a request answered before URL resolution (the database down
        at the session check, a refused Host, a body too large), for its series: counted as
        `unmatched`, a page's 503s hid from alerts by route (found by an audit). Only on
        such errors; a 404 there matched nothing."""
        if response.status_code < 400 or response.status_code == 404:
            return None
        return _path_match(request)


def _path_match(request: HttpRequest):
    """The URL pattern the request's path matches (its view), or None; for a middleware
    that looks at a request before its URL was resolved (`request.resolver_match`)."""
    try:
        return resolve(request.path_info, getattr(request, "urlconf", None))
    except Resolver404:
        return None


def _debug_page(request: HttpRequest, response: HttpResponse) -> bool:
    """Django's HTML page of a /v1 path that matched nothing, in DEBUG (`make run`): every
    /v1 answer is SPEC §3 JSON, as without DEBUG (an integration audit: a typo in a path,
    or a trailing slash, answered the demo's user with HTML)."""
    return is_api_path(request.path) and response.get("Content-Type", "").startswith("text/html")


def access_fields(request: HttpRequest, response: HttpResponse, started: float) -> dict:
    fields = {
        "method": request.method,
        "route": request_route(request),
        "status": response.status_code,
        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        "client_ip": client_ip(request),
    }
    decision = request.META.get(AUTH_DECISION)
    if decision is not None:
        fields["auth_outcome"] = decision.outcome
        if decision.key is not None:
            fields["key_id"] = str(decision.key.id)
            fields["key_prefix"] = decision.key.prefix
        elif decision.user is not None:
            fields["user_id"] = str(decision.user.pk)
    return fields


class ServiceUnavailableMiddleware:
    """The database unreachable while a view runs → 503; never a success or an anonymous page.

    Django turns an exception raised inside a middleware into a response
    before the middleware above it sees it, so outages met by other
    middlewares (the dashboard session check) are answered by the 500 handler,
    `core.views.server_error`, which sends the same 503.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception):
        if is_outage(exception):
            log_outage(exception, request_route(request))
            end_refusing_session(exception)
            return unavailable_response(request)
        return None


class HttpsRedirectKeepsMethodMiddleware:
    """Right above Django's SecurityMiddleware: its HTTPS redirect (HTTPS_ONLY) of a request
    that is not GET or HEAD becomes a 308, which keeps the method and body. With Django's
    301 every HTTP client turns a POST into a GET: an SDK posting to an `http://` URL got
    the list back, nothing created, its credential sent again. (A subclass of the
    middleware would hide it from Django's deploy checks, which look for its name.)"""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            response.status_code == 301
            and settings.SECURE_SSL_REDIRECT
            and not request.is_secure()
            and request.method not in ("GET", "HEAD")
        ):
            return HttpResponsePermanentRedirect(response["Location"], preserve_request=True)
        return response


def _holds_a_secret(request: HttpRequest) -> bool:
    """Whether the request's URL holds a secret (`core.decorators.origin_only_referrer`):
    every answer to it, a CSRF refusal or a 503 page too, keeps its Referer origin-only."""
    # answered before the URL was matched too (a body too large, a 503)
    match = request.resolver_match or _path_match(request)
    return match is not None and getattr(match.func, "origin_only_referrer", False)


class SecurityHeadersMiddleware:
    """Content-Security-Policy per area, and no caching of anything personal."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        path = request.path
        if is_api_path(path) and not path.startswith("/v1/docs"):
            response.setdefault("Content-Security-Policy", API_CSP)  # JSON: framed by none
        else:
            response.setdefault("Content-Security-Policy", DASHBOARD_CSP)
            # Also on pages that end before XFrameOptionsMiddleware (a body too large).
            response.setdefault("X-Frame-Options", "DENY")
            if _holds_a_secret(request):
                response["Referrer-Policy"] = "strict-origin"
        response.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        if not path.startswith("/static/"):
            response.setdefault("Cache-Control", "no-store")
        return response


class FormAddressPageMiddleware:
    """A page address that only receives a form, opened (GET): a page that says so and
    leads on, not Django's empty 405. A refused form is drawn again at its action's
    address (a wrong two-factor code at /login/2fa/, a wrong password at
    /account/password/), so Enter in the address bar or a restored tab opened it and
    showed a blank page (found by a first-hour walkthrough). The status and `Allow` stay;
    the API keeps its JSON 405."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            isinstance(response, HttpResponseNotAllowed)
            and request.method in ("GET", "HEAD")
            and not is_api_path(request.path)
            and not response.content
        ):
            logged_in = getattr(request, "principal", None) is not None
            page = render(request, "errors/405.html", {"logged_in": logged_in}, status=405)
            page["Allow"] = response["Allow"]
            return page
        return response


class RequestSizeLimitMiddleware:
    """A body larger than its endpoint allows is refused before anything reads it.

    The limit is DATA_UPLOAD_MAX_MEMORY_SIZE, except for an endpoint whose valid
    bodies are larger: its view declares `max_body_size` (GitHub's secret-scanning
    reports). The URL is resolved only for a body over the default, so every
    other request pays nothing for that. Django enforces the limit only where it
    parses a body itself, and a view that ignores its body would otherwise accept
    any size. Under /v1 the answer is 400 VALIDATION_ERROR, elsewhere the 400
    page; nothing is authenticated or queried first, and nothing parses or keeps
    the body.

    A body at most LINGER_BYTES over its limit is read to its end and dropped
    before the answer (a lingering close, as nginx does): the server's socket then
    closes with nothing unread, so the client, still sending, gets the 400 rather
    than a connection reset. A larger one is cut off.
    """

    LINGER_BYTES = 1024 * 1024
    CHUNK_BYTES = 64 * 1024

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if CHUNKED_BODY_TOO_LARGE in request.META:  # core.wsgi read no more than this limit
            return self.refusal(request, limit)
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if limit is not None and length > limit:
            limit = max(limit, self.view_limit(request) or 0)
            if length > limit:
                if length <= limit + self.LINGER_BYTES:
                    while request.read(self.CHUNK_BYTES):
                        pass
                return self.refusal(request, limit)
        return self.get_response(request)

    @staticmethod
    def refusal(request: HttpRequest, limit: int) -> HttpResponse:
        if is_api_path(request.path):
            return json_error_response(
                ValidationFailed(
                    {"body": [f"At most {limit} bytes."]}, "The request body is too large."
                )
            )
        return HttpResponse(render_to_string("errors/400.html"), status=400)

    @staticmethod
    def view_limit(request: HttpRequest) -> int | None:
        """The `max_body_size` the view at this path declares, if any."""
        match = _path_match(request)
        if match is None:
            return None
        return getattr(getattr(match.func, "view_class", None), "max_body_size", None)


class CompressionMiddleware(GZipMiddleware):
    """Django's gzip (random padding against BREACH), for answers of more than one packet.

    A key page of 50 keys is 690 KB, 47 KB compressed (a large-tenant audit); an answer
    that fits in one packet arrives no sooner compressed, and compressing `/v1/me` (520
    bytes) cost 16 µs a request, for the many clients (requests, curl --compressed, every
    browser) that accept gzip. Django's own floor is 200 bytes."""

    MIN_BYTES = 1400

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if not response.streaming and len(response.content) < self.MIN_BYTES:
            return response
        return super().process_response(request, response)
