"""A link's token kept in a cookie, so the page the link opens can leave the address bar.

An emailed link carrying a secret (`/reset/<token>/`, `/invitations/<token>/`) keeps its
token here and redirects to a fixed URL, as Django's `PasswordResetConfirmView` does with
its session: the token then leaves the address bar, the history, screenshots, shared
screens and any `Referer`, and no form posts it in its URL.

* Sealed (`core.sealed`, a purpose per link): the token encrypted and authenticated under
  SECRET_KEY, so an altered value is refused and a copy of the browser's cookies does not
  show the token itself. Not Django's session: its cookie backend (this project's) only
  signs, and goes with every request to the site.
* Scoped to the link's pages (`Path`), `HttpOnly`, `Secure` over HTTPS, `SameSite=Lax`, and
  a `Max-Age` no longer than the token has to live. Not `Strict`: a link clicked in a
  webmail is a cross-site navigation, and Chromium withholds a `Strict` cookie from every
  request of a redirect chain a cross-site page started, so the page after the redirect
  would never see it (the browser test shows it). `Lax` is sent on that top-level GET and
  never with a cross-site POST; the forms keep their CSRF token.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from core.sealed import Unreadable, seal, unseal

#: A sealed token is about 4 times a token's 128 characters at most; anything longer is junk.
MAX_COOKIE_LENGTH = 1024


@dataclass(frozen=True)
class TokenCookie:
    name: str
    path: str
    purpose: bytes

    def keep(self, response: HttpResponse, request: HttpRequest, token: str, max_age: int) -> None:
        response.set_cookie(
            self.name,
            seal(self.purpose, token),
            max_age=max_age,
            path=self.path,
            secure=settings.HTTPS_ONLY or request.is_secure(),
            httponly=True,
            samesite="Lax",
        )

    def kept(self, request: HttpRequest) -> str | None:
        """The token the cookie holds; None without one, or with one altered, sealed for
        another purpose, or under a key that is no longer SECRET_KEY or a fallback."""
        sealed = request.COOKIES.get(self.name, "")
        if not sealed or len(sealed) > MAX_COOKIE_LENGTH:
            return None
        try:
            return unseal(self.purpose, sealed)
        except Unreadable:
            return None

    def forget(self, response: HttpResponse) -> None:
        response.delete_cookie(self.name, path=self.path, samesite="Lax")
