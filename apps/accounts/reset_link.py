"""The reset link's token, out of the address bar: kept in a cookie of the reset pages.

The emailed link `/reset/<token>/`, opened with a good token, keeps the token in the
`ss_reset` cookie and sends the browser on to `/reset/set-password/`, as Django's
`PasswordResetConfirmView` does with its session: the page where the password is chosen,
and the form it posts, never show the token, so it leaves the address bar, the history,
screenshots, shared screens and any `Referer`.

* Sealed (`core.sealed`, a purpose of its own): the cookie is the token encrypted and
  authenticated under SECRET_KEY, so an altered value is refused and a copy of the
  browser's cookies does not show the token itself. Not Django's session: its cookie
  backend (the one this project uses) only signs, and goes with every request to the site.
* `Path=/reset/`, `HttpOnly`, `Secure` over HTTPS, `SameSite=Lax`, and a `Max-Age` no longer
  than the token has to live. Not `Strict`: a link clicked in a webmail is a cross-site
  navigation, and Chromium withholds a `Strict` cookie from every request of a redirect
  chain a cross-site page started, so the page after the redirect would never see it.
  `Lax` is sent on that top-level GET and never with a cross-site POST; the form keeps
  its CSRF token.
* Dropped once the password is set, or when the token it holds turns out bad.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.http import base36_to_int

from core.sealed import Unreadable, seal, unseal

RESET_COOKIE = "ss_reset"
RESET_COOKIE_PATH = "/reset/"
#: Where the emailed link sends the browser: a fixed word, never a secret.
SET_PASSWORD_PATH = "/reset/set-password/"
_PURPOSE = b"sigsentry.accounts.reset-link-cookie"
#: A sealed token is about 4 times the token's 128 characters at most; anything longer is junk.
_MAX_COOKIE_LENGTH = 1024
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
    response.set_cookie(
        RESET_COOKIE,
        seal(_PURPOSE, token),
        max_age=seconds_left(token),
        path=RESET_COOKIE_PATH,
        secure=settings.HTTPS_ONLY or request.is_secure(),
        httponly=True,
        samesite="Lax",
    )


def kept_token(request: HttpRequest) -> str | None:
    """The token the reset cookie holds; None without one, or with one altered or sealed
    under a key that is no longer SECRET_KEY or one of its fallbacks."""
    sealed = request.COOKIES.get(RESET_COOKIE, "")
    if not sealed or len(sealed) > _MAX_COOKIE_LENGTH:
        return None
    try:
        return unseal(_PURPOSE, sealed)
    except Unreadable:
        return None


def forget_token(response: HttpResponse) -> None:
    response.delete_cookie(RESET_COOKIE, path=RESET_COOKIE_PATH, samesite="Lax")
