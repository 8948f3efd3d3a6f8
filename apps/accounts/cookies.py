"""The dashboard's session transport: the JWT pair in HttpOnly cookies.

Secure when HTTPS_ONLY, SameSite=Lax, HttpOnly (page scripts never read them;
same-origin fetches send them, and unsafe methods then need the CSRF token).
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse
from django.utils import timezone

from apps.accounts.tokens import TokenPair
from apps.apikeys.authentication import ACCESS_COOKIE, REFRESH_COOKIE


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
