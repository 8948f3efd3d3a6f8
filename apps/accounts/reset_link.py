"""The reset link's token, out of the address bar (core.token_cookie): the emailed link
`/reset/<token>/`, opened with a good token, keeps it sealed in the `ss_reset` cookie
(`Path=/reset/`, for no longer than a token lives) and redirects to
`/reset/set-password/`, whose page and form never show it. The cookie goes once the
password is set, or when the token it holds turns out bad."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from core.token_cookie import TokenCookie

RESET_COOKIE = "ss_reset"
#: Where the emailed link sends the browser: a fixed word, never a secret.
SET_PASSWORD_PATH = "/reset/set-password/"
cookie = TokenCookie(RESET_COOKIE, "/reset/", b"sigsentry.accounts.reset-link-cookie")


def keep_token(response: HttpResponse, request: HttpRequest, token: str) -> None:
    # For the link's whole life: the token in it is checked again on every use, so a cookie
    # that outlives it opens only the invalid page (and is dropped there).
    cookie.keep(response, request, token, settings.PASSWORD_RESET_TIMEOUT)
