"""Cross-cutting HTTP behaviour: request metrics, fail closed on database outages, security
headers, body size."""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.core.exceptions import MiddlewareNotUsed
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

from core import metrics
from core.errors import (
    ServiceUnavailable,
    ValidationFailed,
    is_outage,
    json_error_response,
)

logger = logging.getLogger("core.errors")

API_PREFIX = "/v1/"

# Dashboard pages: scripts and styles only from our own origin, no inline code.
DASHBOARD_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
# Django's admin and the API docs page use inline styles of their own.
ADMIN_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
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


class RequestMetricsMiddleware:
    """Counts and times every request by route template and status (core.metrics).

    The outermost middleware after the operations endpoints, so the time covers
    the whole stack and every answer is counted, including those other
    middlewares give (redirects, 503s, refused bodies). The label is the URL
    pattern that matched (`v1/keys/<uuid:key_id>`), never the path: ids, and
    whatever a scanner tries, do not become series. Off (not in the chain)
    while METRICS_TOKEN is unset.
    """

    def __init__(self, get_response):
        if not metrics.enabled():
            raise MiddlewareNotUsed
        self.get_response = get_response
        self.static_prefix = "/" + settings.STATIC_URL.lstrip("/")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = request.resolver_match
        if match is not None:
            route = match.route
        elif request.path_info.startswith(self.static_prefix):
            route = "static"
        else:
            route = "unmatched"
        metrics.record_request(
            route, request.method, response.status_code, time.perf_counter() - started
        )
        return response


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
            logger.error("database unavailable while serving %s", request.path)
            return unavailable_response(request)
        return None


class SecurityHeadersMiddleware:
    """Content-Security-Policy per area, and no caching of anything personal."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        path = request.path
        if is_api_path(path) and not path.startswith("/v1/docs"):
            policy = API_CSP
        elif path.startswith(("/admin/", "/v1/docs")):
            policy = ADMIN_CSP
        else:
            policy = DASHBOARD_CSP
        response.setdefault("Content-Security-Policy", policy)
        response.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        if not path.startswith("/static/"):
            response.setdefault("Cache-Control", "no-store")
        return response


class RequestSizeLimitMiddleware:
    """A body larger than DATA_UPLOAD_MAX_MEMORY_SIZE is refused before anything reads it.

    Django enforces the limit only where it parses a body itself, and a view
    that ignores its body would otherwise accept any size. Under /v1 the answer
    is 400 VALIDATION_ERROR, elsewhere the 400 page; nothing is authenticated
    or queried first.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if limit is not None and length > limit:
            if is_api_path(request.path):
                return json_error_response(
                    ValidationFailed(
                        {"body": [f"At most {limit} bytes."]}, "The request body is too large."
                    )
                )
            return HttpResponse(render_to_string("errors/400.html"), status=400)
        return self.get_response(request)
