"""Dashboard sessions: who is looking at a page, with a silent refresh before expiry.

For every non-API page the access cookie is verified (the same checks as the
API). When it is missing, expired or close to expiry and the refresh cookie is
still good, the pair is rotated and the new cookies go out with the page, so
the user never notices. A dead session clears its cookies. The session's
"last seen" is recorded (at most once a minute) for the account page's list.

A view that writes the cookies itself marks its response: `sets_session`
(login, signup: their new pair wins over a rotation done here) or
`ends_session` (logout: nothing is written back but the cleared cookies).
"""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime, timedelta

from django.utils import timezone

from apps.accounts import services, tokens
from apps.accounts.cookies import (
    ACCESS_COOKIE,
    REFRESH_COOKIE,
    clear_session_cookies,
    set_session_cookies,
)
from apps.accounts.tokens import MAX_CREDENTIAL_LENGTH
from core.errors import AuthError, end_refusing_session, is_outage, log_outage
from core.logging import request_route
from core.middleware import unavailable_response
from core.principal import Principal

logger = logging.getLogger("core.errors")  # where every 503 is logged

REFRESH_AHEAD = timedelta(hours=1)
_SKIP_PREFIXES = ("/v1/", "/static/", "/admin/")


def _principal_from_access(token: str) -> tuple[Principal, datetime]:
    principal, claims = tokens.principal_for_access(token)
    return principal, datetime.fromtimestamp(claims["exp"], tz=UTC)


class DashboardSessionMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.principal = None
        request.session_expires_at = None
        if request.path.startswith(_SKIP_PREFIXES):
            return self.get_response(request)
        access = request.COOKIES.get(ACCESS_COOKIE, "")[:MAX_CREDENTIAL_LENGTH]
        refresh = request.COOKIES.get(REFRESH_COOKIE, "")[:MAX_CREDENTIAL_LENGTH]
        pair = None
        stale = False
        if access:
            try:
                request.principal, request.session_expires_at = _principal_from_access(access)
            except AuthError:
                stale = True
        needs_refresh = request.principal is None or (
            request.session_expires_at - timezone.now() < REFRESH_AHEAD
        )
        if refresh and needs_refresh:
            try:
                pair = services.refresh(refresh_token=refresh)
            except services.RefreshRaced as raced:
                # Another tab's request just rotated the pair: this one gets the same
                # generation (the winner's answer may never reach the browser), never a
                # cleared cookie, which would log the user out of every tab.
                pair = services.rejoin_rotation(raced)
                stale = pair is None and request.principal is None
            except AuthError:
                stale = stale or request.principal is None
        elif refresh and request.principal is None:
            stale = True
        try:
            response = self._page(request, pair)
        except Exception as exc:
            if pair is None or not is_outage(exc):
                raise
            # The rotation is committed: its cookies go out with the 503. Without them the
            # browser would send the old refresh token again, and reuse ends the session.
            log_outage(exc, request_route(request))
            end_refusing_session(exc)
            response = unavailable_response(request)
        if getattr(response, "sets_session", False) or getattr(response, "ends_session", False):
            return response
        if pair is not None:
            set_session_cookies(response, pair)
        elif stale:
            clear_session_cookies(response)
        return response

    def _page(self, request, pair):
        if pair is not None:
            # Ended meanwhile: the page is the one without it, the cookies still rotate.
            with contextlib.suppress(AuthError):
                request.principal, request.session_expires_at = _principal_from_access(pair.access)
        if request.principal is not None:
            services.touch_session(request.principal.session, request)
        return self.get_response(request)
