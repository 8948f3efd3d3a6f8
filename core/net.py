"""The client's IP address, trusting `X-Forwarded-For` only as far as NUM_PROXIES says;
and whether an address is public, for every check of where this service, or a client it
configures, sends requests (webhooks, GitHub's keys, notification channels)."""

from __future__ import annotations

import codecs
import contextlib
import functools
import ipaddress
import unicodedata

from django.conf import settings
from django.http import HttpRequest

from core.errors import ApiError, IpNotAllowed, OriginNotAllowed, without_credentials


def client_ip(request: HttpRequest) -> str | None:
    """REMOTE_ADDR, or with N trusted proxies the N-th address from the right of X-Forwarded-For.

    Each trusted proxy appends the address it received the request from, so only
    the rightmost N entries are trustworthy; anything further left is the
    client's own claim and is ignored. Entries are counted as sent (empty ones
    included), and when the trusted entry is missing or not an IP address the
    peer address is used: a client can never pick the address it is counted under.
    """
    proxies = settings.NUM_PROXIES
    if proxies:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
        if len(forwarded) >= proxies:
            trusted = _ip(forwarded[-proxies])
            if trusted is not None:
                return trusted
    return _ip(request.META.get("REMOTE_ADDR"))


@functools.lru_cache(maxsize=1024)
def _ip(value: str | None) -> str | None:
    """The normalized address, or None. Cached: runs on every request, for few distinct values.

    One client is one spelling everywhere (usage counts, `lastUsedIp`, sessions, audit):
    an IPv6 zone (`fe80::1%eth0`, a link-local peer) names the server's interface, not the
    client, and is dropped (PostgreSQL's inet drops it too); an IPv4 client of a dual-stack
    socket (`::ffff:203.0.113.7`) is its IPv4 address, which Python 3.11 would otherwise
    write `::ffff:cb00:7107` and the databases `::ffff:203.0.113.7`.
    """
    if not value:
        return None
    try:
        address = ipaddress.ip_address(value.strip().split("%", 1)[0])
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)


@functools.lru_cache(maxsize=4096)
def _networks(allowed_ips: tuple[str, ...]) -> tuple:
    """Parsed once per distinct list (records are immutable, so the tuple is a fine key)."""
    return tuple(ipaddress.ip_network(cidr) for cidr in allowed_ips)


@functools.lru_cache(maxsize=4096)
def ip_allowed(ip: str | None, allowed_ips: tuple[str, ...]) -> bool:
    """Whether the client IP (per NUM_PROXIES) is in a key's allowlist (SPEC §4.10).
    Cached: a pure answer, and a client keeps its IP from request to request (6d557f5)."""
    if ip is None:
        return False
    address = ipaddress.ip_address(ip)
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in _networks(allowed_ips))


def client_refusal(
    request: HttpRequest, allowed_origins: tuple[str, ...], allowed_ips: tuple[str, ...]
) -> type[ApiError] | None:
    """What a key's origin and IP lists refuse this request for, in SPEC §4.10's order
    (origin, then IP), or None when they let it through (an empty list allows any)."""
    origin = request.META.get("HTTP_ORIGIN")
    if allowed_origins and (origin is None or origin.lower() not in allowed_origins):
        return OriginNotAllowed
    if allowed_ips and not ip_allowed(client_ip(request), allowed_ips):
        return IpNotAllowed
    return None


#: What a User-Agent may not carry into a page, a JSON answer or a webhook: control
#: characters (a C1 CSI or OSC, U+009B / U+009D, drives a terminal that prints the API's
#: answer), format characters (bidirectional overrides, zero-width characters) and line or
#: paragraph separators.
_NOT_SHOWN_AS_SENT = frozenset({"Cc", "Cf", "Zl", "Zp"})


def user_agent(request: HttpRequest) -> str:
    """The request's User-Agent, safe to show (`readable_agent`), at most 256 characters."""
    return readable_agent(request.META.get("HTTP_USER_AGENT"))[:256]


_utf_8 = codecs.getincrementaldecoder("utf-8")


def readable_agent(raw: str | None) -> str:
    """A User-Agent header as its sender wrote it, safe to show.

    Whoever holds a key sets it, and SDK keys are public: it is shown on the key pages and
    sent in the key object (API, webhooks). WSGI hands a header over as latin-1, so a
    UTF-8 agent ("Café/1.0") is read back as UTF-8 where its bytes are UTF-8 (as Django
    reads the path); then every control or format character (`_NOT_SHOWN_AS_SENT`) becomes
    U+FFFD, which shows that something was there. Only the first 1024 characters are read.
    A credential in it is masked (`core.errors.without_credentials`): an agent is stored.
    """
    text = (raw or "")[:1024]
    # not UTF-8 bytes (or not from WSGI): kept as they came; not final, so a character the
    # 1024th byte cuts in two is left out rather than the whole read as latin-1
    with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
        text = _utf_8().decode(text.encode("latin-1"))
    shown = (
        "\ufffd" if unicodedata.category(character) in _NOT_SHOWN_AS_SENT else character
        for character in text
    )
    return without_credentials("".join(shown))


#: An IPv6 client is counted by its /64: one subscriber's LAN gets a whole /64
#: (RFC 6177), so it can rotate through 2**64 addresses at no cost.
IPV6_CLIENT_PREFIX = 64


@functools.lru_cache(maxsize=4096)
def throttle_subject(ip: str | None) -> str | None:
    """What a per-client throttle counts for `ip`: an IPv4 address as it is, an IPv6 one by its /64.

    An IPv4-mapped IPv6 address (`::ffff:198.51.100.7`) counts as its IPv4
    address. Anything that is not an address (or is already a /64, so applying
    this twice changes nothing) comes back unchanged; None stays None.
    """
    if not ip:
        return ip
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if address.version == 4:
        return str(address)
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False))


#: Not globally reachable (IANA's special-purpose registries) though the `ipaddress` tables
#: of some Python releases call them global: CGNAT, the IETF protocol block (192.0.0.192 is
#: a cloud metadata address; 3.11 before 3.11.10 lists only parts of it), the deprecated
#: 6to4 relay anycast, and IPv6 documentation (RFC 9637, newer than every 3.11).
_NOT_GLOBAL = tuple(
    ipaddress.ip_network(block)
    for block in ("100.64.0.0/10", "192.0.0.0/24", "192.88.99.0/24", "3fff::/20")
)
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_TEREDO = ipaddress.ip_network("2001::/32")


#: Why a Unicode host name is refused in a URL the service will send to (webhooks, channels).
ASCII_HOST_NAME = (
    "Write an internationalized host name in its ASCII form (xn--…), as your DNS provider shows it."
)


def is_public_address(text: str) -> bool:
    """True only for a globally routable unicast address."""
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip.sixtofour is not None:
            if not is_public_address(str(ip.sixtofour)):
                return False
        elif ip in _TEREDO or any(ip in net for net in _NAT64):
            return False
    if any(ip in block for block in _NOT_GLOBAL):
        return False
    return (
        ip.is_global
        and not ip.is_private
        and not ip.is_loopback
        and not ip.is_link_local
        and not ip.is_multicast
        and not ip.is_reserved
        and not ip.is_unspecified
        and not (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local)
    )
