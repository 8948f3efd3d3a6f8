"""System checks for the session rules that settings alone could break, and (`check
--deploy`) for the settings every emailed link rests on."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.http.request import validate_host

from core.mail import sender_domain

BLACKLIST_APP = "rest_framework_simplejwt.token_blacklist"
UNCONFIGURED_EMAIL_BACKEND = "core.mail.UnconfiguredEmailBackend"
SMTP_EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


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


def _names_this_machine(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


@register(Tags.security, deploy=True)
def check_email_links(app_configs=None, **kwargs) -> list[Error | Warning]:
    """`check --deploy`: what every emailed link and its sender rest on. Each default is
    right for the demo and wrong for a deployment, and nothing else would say so: the
    links of resets, invitations and notices would lead nowhere (found by an audit). And
    warnings: an SMTP password in clear, a published key still among the fallbacks (reset
    links can be forged with it)."""
    errors: list[Error | Warning] = []
    site = urlsplit(settings.SITE_URL)
    host = site.hostname or ""
    if _names_this_machine(host):
        errors.append(
            Error(
                f"SITE_URL ({settings.SITE_URL}) names this machine: every emailed link "
                "(password resets, invitations, notices) would lead there.",
                hint="Set SITE_URL to the dashboard's public address, "
                "such as https://sigsentry.example.com.",
                id="sigsentry.E004",
            )
        )
    elif not validate_host(f"[{host}]" if ":" in host else host, settings.ALLOWED_HOSTS):
        errors.append(
            Error(
                f"SITE_URL's host ({host}) is not in ALLOWED_HOSTS: every emailed link "
                "would be answered 400.",
                id="sigsentry.E005",
            )
        )
    if settings.HTTPS_ONLY and site.scheme != "https":
        errors.append(
            Error(
                "SITE_URL is http:// while the site is served over HTTPS only: a reset or "
                "invitation link would send its token in clear on its first click.",
                hint="Use https:// in SITE_URL.",
                id="sigsentry.E006",
            )
        )
    domain = sender_domain()
    if "." not in domain or _names_this_machine(domain.lower()):
        errors.append(
            Error(
                f"DEFAULT_FROM_EMAIL ({settings.DEFAULT_FROM_EMAIL}) has no public domain: "
                "receiving servers reject or flag its mail (SPF, DMARC).",
                hint="Set DEFAULT_FROM_EMAIL to an address of your domain, "
                "such as 'SigSentry <no-reply@sigsentry.example.com>'.",
                id="sigsentry.E007",
            )
        )
    if (
        settings.EMAIL_BACKEND == SMTP_EMAIL_BACKEND
        and settings.EMAIL_HOST_PASSWORD
        and not (settings.EMAIL_USE_TLS or settings.EMAIL_USE_SSL)
        and not _names_this_machine(settings.EMAIL_HOST.lower())
    ):
        # A warning: a relay on a private network may be meant (a review: an error stopped
        # the release step of such a deployment, with no way to silence it).
        errors.append(
            Warning(
                "EMAIL_URL sends its password, and every reset and invitation link, "
                "in clear (smtp:// to another machine).",
                hint="Use smtp+tls://user:password@host:587 or smtp+ssl://...:465.",
                id="sigsentry.W002",
            )
        )
    # Django's new projects' keys, and the settings' development key among them.
    if any(key.startswith("django-insecure-") for key in settings.SECRET_KEY_FALLBACKS):
        errors.append(
            Warning(
                "SECRET_KEY_FALLBACKS holds a published key: password-reset links and "
                "admin sessions can be forged with it while it stays.",
                hint="Run python manage.py reseal_secrets, then remove it "
                "(README: Rotating SECRET_KEY).",
                id="sigsentry.W001",
            )
        )
    if settings.EMAIL_BACKEND == UNCONFIGURED_EMAIL_BACKEND:
        errors.append(
            Error(
                "EMAIL_URL is not set: no email goes out (each is retried until it is).",
                hint="Set EMAIL_URL, such as smtp+tls://user:password@smtp.example.com:587.",
                id="sigsentry.E008",
            )
        )
    return errors
