"""Where a webhook may point (SSRF guard), checked at creation and again at every delivery.

A URL must be `https://`, carry no user name or password, and every address its
host resolves to must be public: no loopback, private (RFC 1918), link-local
(cloud metadata at 169.254.169.254 included), CGNAT (100.64.0.0/10), multicast,
reserved, unspecified, documentation or IPv6 unique-local address, nor an IPv6 form that embeds
one (IPv4-mapped, NAT64, 6to4). Deliveries connect to the very address that was
checked (no second resolution an attacker's DNS could answer differently) and
never follow redirects. A lookup waits at most LOOKUP_TIMEOUT_SECONDS, so a slow or
silent resolver holds neither a web worker nor the delivery worker.

`WEBHOOKS_ALLOW_PRIVATE=true` (development and tests only) lifts the address
rule and allows `http://`.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from django.conf import settings

from core.deadline import DeadlinePassed, call_within
from core.net import ASCII_HOST_NAME, is_public_address
from core.validation import has_hidden_characters

MAX_URL_LENGTH = 2048


class UnsafeUrl(ValueError):
    """The URL may not be used; the message is safe to show to the webhook's owner."""


class LookupTimedOut(UnsafeUrl):
    """The host name did not resolve within LOOKUP_TIMEOUT_SECONDS."""


#: How long a host name may take to resolve, at creation (in a web request) and at each
#: delivery: the system resolver's own limits (resolv.conf) can add up to far more.
LOOKUP_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str  # path and query, what goes on the request line
    addresses: tuple[str, ...]


#: What `quote` leaves as it is in a path and query besides letters, digits and "_.-~":
#: RFC 3986's delimiters and "%" (an existing escape).
_PATH_SAFE = "!$%&'()*+,/:;=?@[]~"


def allow_private() -> bool:
    return bool(settings.WEBHOOKS_ALLOW_PRIVATE)


def parse_url(url: object) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of a webhook URL, or UnsafeUrl. No network use."""
    if not isinstance(url, str) or not url.strip():
        raise UnsafeUrl("A URL is required.")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"At most {MAX_URL_LENGTH} characters.")
    # Shown on the webhooks page and its confirmation: as it is, not as another URL.
    if has_hidden_characters(url):
        raise UnsafeUrl("The URL may not contain spaces, control or invisible characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl("Not a valid URL.") from exc
    if port == 0:  # stored as written, it was delivered to the scheme's port (a fuzzing audit)
        raise UnsafeUrl("Not a valid URL: port 0 is no port.")
    scheme = parts.scheme.lower()
    allowed = ("https", "http") if allow_private() else ("https",)
    if scheme not in allowed:
        raise UnsafeUrl("The URL must start with https://.")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("The URL may not contain a user name or password.")
    if parts.fragment:
        raise UnsafeUrl("The URL may not contain a #fragment.")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UnsafeUrl("The URL needs a host name.")
    # Python looks up and connects to a Unicode host by IDNA 2003, where "straße.example"
    # is strasse.example, another domain than browsers and curl reach (IDNA 2008:
    # xn--strae-oqa.example), with its own owner (found by a Unicode audit).
    if not host.isascii():
        raise UnsafeUrl(ASCII_HOST_NAME)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    # The request line is ASCII: other characters are percent-encoded as a browser does
    # ("/café" → "/caf%C3%A9"); escapes already there and the URL's delimiters stay.
    path = quote(path, safe=_PATH_SAFE)
    return scheme, host, (443 if scheme == "https" else 80) if port is None else port, path


#: One answer for a name that does not resolve and one that resolves inside: different
#: answers would let an organization owner map the server's internal DNS names.
NOT_PUBLIC = (
    "The host name must resolve, and only to public addresses (not loopback, private, "
    "link-local or multicast)."
)


def resolve(url: object) -> Target:
    """Parse, resolve and check every address; UnsafeUrl if any is not allowed.

    The addresses are those the delivery connects to.
    """
    scheme, host, port, path = parse_url(url)
    try:
        infos = _lookup(host, port)
    except (OSError, UnicodeError) as exc:
        raise UnsafeUrl(NOT_PUBLIC) from exc
    addresses = tuple(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise UnsafeUrl(NOT_PUBLIC)
    if not allow_private():
        for address in addresses:
            if not is_public_address(address):
                raise UnsafeUrl(NOT_PUBLIC)
    return Target(scheme=scheme, host=host, port=port, path=path, addresses=addresses)


def _lookup(host: str, port: int) -> list:
    """`getaddrinfo` in a thread of its own, waited for at most LOOKUP_TIMEOUT_SECONDS
    (it takes no timeout); a lookup still hanging then ends with its thread, unused."""
    try:
        return call_within(
            LOOKUP_TIMEOUT_SECONDS,
            lambda: socket.getaddrinfo(host, port, type=socket.SOCK_STREAM),
            "webhook-host-lookup",
        )
    except DeadlinePassed:
        raise LookupTimedOut(NOT_PUBLIC) from None
