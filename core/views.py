"""Error pages: JSON (SPEC §3) under /v1, friendly pages elsewhere."""

from __future__ import annotations

import sys

from django.shortcuts import render

from core.errors import (
    ApiError,
    NotFound,
    PermissionDenied,
    ValidationFailed,
    end_refusing_session,
    is_outage,
    json_error_response,
)
from core.logging import current_request_id
from core.middleware import is_api_path, unavailable_response


def _page(request, template: str, status: int, context: dict | None = None):
    return render(request, template, context, status=status)


def bad_request(request, exception=None):
    if is_api_path(request.path):
        return json_error_response(
            ValidationFailed({"request": ["The request could not be read."]})
        )
    return _page(request, "errors/400.html", 400)


def permission_denied(request, exception=None):
    if is_api_path(request.path):
        return json_error_response(
            PermissionDenied(PermissionDenied.UNDECLARED, PermissionDenied.message)
        )
    return _page(request, "errors/403.html", 403)


def page_not_found(request, exception=None):
    if is_api_path(request.path):
        return json_error_response(NotFound())
    return _page(request, "errors/404.html", 404)


def server_error(request):
    """A 500, except for a database outage, which is the 503 of `unavailable_response`."""
    if is_outage(sys.exc_info()[1]):
        end_refusing_session(sys.exc_info()[1])
        return unavailable_response(request)
    if is_api_path(request.path):
        err = ApiError("Something went wrong on our side.")
        err.status_code, err.code = 500, "INTERNAL_ERROR"
        return json_error_response(err)
    # Its reference, to quote to support: the id of the lines the error wrote.
    return _page(request, "errors/500.html", 500, {"request_id": current_request_id.get()})


def csrf_failure(request, reason: str = ""):
    if is_api_path(request.path):
        return json_error_response(
            PermissionDenied(PermissionDenied.CSRF_HEADER, "CSRF check failed.")
        )
    return render(request, "errors/403_csrf.html", status=403)
