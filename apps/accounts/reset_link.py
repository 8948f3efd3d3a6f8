"""The reset link's token, out of the address bar (core.token_cookie): the emailed link
`/reset/<token>/`, opened with a good token, keeps it sealed in the `ss_reset` cookie
(`Path=/reset/`, for no longer than the token lives) and redirects to
`/reset/set-password/`, whose page and form never show it. The cookie goes once the
password is set, or when the token it holds turns out bad."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.http import base36_to_int

from core.token_cookie import TokenCookie

RESET_COOKIE = "ss_reset"
#: Where the emailed link sends the browser: a fixed word, never a secret.
SET_PASSWORD_PATH = "/reset/set-password/"
cookie = TokenCookie(RESET_COOKIE, "/reset/", b"sigsentry.accounts.reset-link-cookie")
#: Django's reset tokens count seconds from here (`PasswordResetTokenGenerator`, local time).
_TOKEN_EPOCH = datetime(2001, 1, 1)


def seconds_left(token: str) -> int:
    """How long a (checked) reset token still lives, from the timestamp it carries: Django's
    reset token is `<seconds since 2001-01-01, base 36>-<HMAC>`. 0 to PASSWORD_RESET_TIMEOUT;
    0 for a token that says nothing readable (no cookie is then kept)."""
    _uid, _, signed = token.partition(".")
    stamp, _, _hmac = signed.partition("-")
    try:
        made = base36_to_int(stamp)
    except ValueError:
        return 0
    age = int((datetime.now() - _TOKEN_EPOCH).total_seconds()) - made
    return max(0, min(settings.PASSWORD_RESET_TIMEOUT, settings.PASSWORD_RESET_TIMEOUT - age))


def keep_token(response: HttpResponse, request: HttpRequest, token: str) -> None:
    cookie.keep(response, request, token, seconds_left(token))


def kept_token(request: HttpRequest) -> str | None:
    return cookie.kept(request)


def forget_token(response: HttpResponse) -> None:
    cookie.forget(response)
