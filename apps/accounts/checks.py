"""System checks for the session rules that settings alone could break."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Tags, register

BLACKLIST_APP = "rest_framework_simplejwt.token_blacklist"


@register(Tags.security)
def check_session_tokens(app_configs=None, **kwargs) -> list[Error]:
    """Refresh rotation needs simplejwt's blacklist, and the signing algorithm stays pinned."""
    errors: list[Error] = []
    if BLACKLIST_APP not in settings.INSTALLED_APPS:
        errors.append(
            Error(
                f"{BLACKLIST_APP} is not installed: rotated refresh tokens could not be revoked.",
                hint=f"Add {BLACKLIST_APP!r} to INSTALLED_APPS.",
                id="sigsentry.E001",
            )
        )
    jwt = getattr(settings, "SIMPLE_JWT", {})
    if jwt.get("ALGORITHM") != "HS256" or not jwt.get("ROTATE_REFRESH_TOKENS"):
        errors.append(
            Error(
                "SIMPLE_JWT must pin ALGORITHM to HS256 and rotate refresh tokens.",
                id="sigsentry.E002",
            )
        )
    if not settings.JWT_SIGNING_KEY or len(settings.JWT_SIGNING_KEY) < 32:
        errors.append(Error("JWT_SIGNING_KEY must be at least 32 characters.", id="sigsentry.E003"))
    return errors
