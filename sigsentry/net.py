"""The client's IP address, trusting `X-Forwarded-For` only as far as NUM_PROXIES says."""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str | None:
    """REMOTE_ADDR, or with N trusted proxies the N-th address from the right of X-Forwarded-For.

    Each trusted proxy appends the address it received the request from, so only
    the rightmost N entries are trustworthy; anything further left is the
    client's own claim and is ignored.
    """
    remote = request.META.get("REMOTE_ADDR")
    proxies = settings.NUM_PROXIES
    if proxies:
        forwarded = [
            part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
        ]
        forwarded = [part for part in forwarded if part]
        if len(forwarded) >= proxies:
            remote = forwarded[-proxies]
    try:
        return str(ipaddress.ip_address(remote)) if remote else None
    except ValueError:
        return None


def user_agent(request: HttpRequest) -> str:
    return request.META.get("HTTP_USER_AGENT", "")[:256]
