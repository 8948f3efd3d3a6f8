"""The dashboard's session transport: the JWT pair in HttpOnly cookies.

Secure when HTTPS_ONLY, SameSite=Lax, HttpOnly (page scripts never read them;
same-origin fetches send them, and unsafe methods then need the CSRF token).
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.utils import timezone

from apps.accounts.tokens import TokenPair
from core.errors import PermissionDenied

ACCESS_COOKIE = "ss_access"
REFRESH_COOKIE = "ss_refresh"


def enforce_csrf(request) -> None:
    """Django's CSRF check for a request authenticated by the session cookies.

    The cookies travel with any cross-site request, so an unsafe method sent
    with them must carry the CSRF token (`X-CSRFToken`), as a form would. The
    middleware answers a refusal with a response of its own; here it is an API error.
    Not DRF's `SessionAuthentication.enforce_csrf`: its check overrides the middleware's
    private `_reject` and so never logs a refusal (`django.security.csrf`, as the pages'
    are); this one calls the middleware's public hooks and reads their return value.
    """
    check = CsrfViewMiddleware(lambda req: None)
    check.process_request(request)
    if check.process_view(request, None, (), {}) is not None:
        # Not only a missing token: a wrong Origin or Referer is refused the same way (an
        # HTTP audit found the message blamed the header it had sent).
        raise PermissionDenied(
            PermissionDenied.CSRF_HEADER,
            "CSRF check failed: send the X-CSRFToken header, from this site's pages.",
        )


def set_session_cookies(response: HttpResponse, pair: TokenPair) -> None:
    now = timezone.now()
    for name, value, expires_at in (
        (ACCESS_COOKIE, pair.access, pair.access_expires_at),
        (REFRESH_COOKIE, pair.refresh, pair.refresh_expires_at),
    ):
        response.set_cookie(
            name,
            value,
            max_age=max(0, int((expires_at - now).total_seconds())),
            path="/",
            secure=settings.HTTPS_ONLY,
            httponly=True,
            samesite="Lax",
        )
    response["Cache-Control"] = "no-store"


def clear_session_cookies(response: HttpResponse) -> None:
    for name in (ACCESS_COOKIE, REFRESH_COOKIE):
        response.delete_cookie(name, path="/", samesite="Lax")
