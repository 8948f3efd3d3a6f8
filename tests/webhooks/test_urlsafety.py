"""The SSRF guard (SPEC §4.11). Only literal addresses and `localhost`: no traffic leaves
this machine, and refusals are decided before any connection."""

from __future__ import annotations

import pytest
from django.test import override_settings

from apps.webhooks.urlsafety import UnsafeUrl, resolve
from core.net import is_public_address

REFUSED_ADDRESSES = [
    "127.0.0.1",
    "127.8.9.10",
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # CGNAT
    "0.0.0.0",
    "224.0.0.1",
    "239.255.255.250",
    "255.255.255.255",
    "::1",
    "::",
    "fe80::1",
    "fd00:ec2::254",  # unique-local (AWS IPv6 metadata)
    "fc00::1",
    "fec0::1",  # site-local (deprecated, RFC 3879): Python 3.11 calls it global
    "fec0:1::5",
    "ff02::1",
    "::ffff:127.0.0.1",  # IPv4-mapped loopback
    "::ffff:10.0.0.1",
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2001::1",  # Teredo
    "192.0.2.1",  # documentation
    "198.18.0.1",  # benchmarking
    # Not global, though Python 3.11's tables before 3.11.10 say so:
    "192.0.0.192",  # IETF protocol assignments; Oracle Cloud's metadata service
    "192.0.0.254",
    "192.88.99.1",  # deprecated 6to4 relay anycast
    "3fff::1",  # IPv6 documentation (RFC 9637)
    "::ffff:192.0.0.192",
]


@pytest.mark.parametrize("address", REFUSED_ADDRESSES)
def test_non_public_addresses_are_refused(address):
    assert is_public_address(address) is False


@pytest.mark.parametrize(
    "address",
    # the last: a public IPv4 address as an IPv6 socket writes it (read as the IPv4 one)
    ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"],
)
def test_public_addresses_are_allowed(address):
    assert is_public_address(address) is True


@override_settings(WEBHOOKS_ALLOW_PRIVATE=False)
@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://10.0.0.1/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]:8443/hook",
        "https://[fd00::1]/hook",
        "https://100.64.1.1/",
        "https://224.0.0.1/",
    ],
)
def test_urls_resolving_to_private_addresses_are_refused(url):
    with pytest.raises(UnsafeUrl, match="public addresses"):
        resolve(url)


@override_settings(WEBHOOKS_ALLOW_PRIVATE=False)
def test_an_internal_name_and_a_name_that_does_not_exist_get_one_answer():
    """Otherwise an organization owner could map the server's internal DNS names."""
    answers = []
    for url in ("https://localhost/hook", "https://no-such-host.invalid/hook"):
        with pytest.raises(UnsafeUrl) as refused:
            resolve(url)
        answers.append(str(refused.value))
    assert answers[0] == answers[1]


@override_settings(WEBHOOKS_ALLOW_PRIVATE=False)
@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://8.8.8.8/hook", "https://"),
        ("ftp://8.8.8.8/hook", "https://"),
        ("file:///etc/passwd", "https://"),
        ("gopher://8.8.8.8/", "https://"),
        ("https://user:pass@8.8.8.8/", "user name or password"),
        ("https://8.8.8.8/#frag", "fragment"),
        ("https:///nohost", "host"),
        ("https://8.8.8.8:99999/", "valid URL"),
        ("https://8.8.8.8:0/hook", "port 0"),  # was stored as such and sent to 443
        ("https://8.8.8.8:00/hook", "port 0"),
        ("https://8.8.8.8/a b", "spaces"),
        # Shown as another URL than it is (found by an audit): a right-to-left override,
        # a zero-width space, a soft hyphen, a no-break space, a line separator.
        ("https://8.8.8.8/invoice\u202egnp.exe", "invisible"),
        ("https://8.8.8.8/pay\u200bments", "invisible"),
        ("https://exam\u00adple.com/hook", "invisible"),
        ("https://8.8.8.8/a\u00a0b", "spaces"),
        ("https://8.8.8.8/a\u2028b", "spaces"),
        # Looked up by IDNA 2003 as strasse.example, another domain than browsers reach
        # (found by a Unicode audit); a full-width dot, the same.
        ("https://straße.example/hook", "xn--"),
        ("https://bücher.example/hook", "xn--"),
        ("https://example\uff0ecom/hook", "xn--"),
        ("", "required"),
        ("https://8.8.8.8/" + "a" * 3000, "2048"),
    ],
)
def test_malformed_or_non_https_urls_are_refused(url, reason):
    with pytest.raises(UnsafeUrl, match=reason):
        resolve(url)


@override_settings(WEBHOOKS_ALLOW_PRIVATE=False)
def test_a_public_literal_address_is_accepted_without_any_connection():
    target = resolve("https://8.8.8.8:8443/hooks?a=1")
    assert (target.scheme, target.host, target.port, target.path, target.addresses) == (
        "https",
        "8.8.8.8",
        8443,
        "/hooks?a=1",
        ("8.8.8.8",),
    )


@override_settings(WEBHOOKS_ALLOW_PRIVATE=True)
def test_the_development_switch_allows_loopback_and_plain_http():
    target = resolve("http://127.0.0.1:8080/hook")
    assert target.addresses == ("127.0.0.1",)
    with pytest.raises(UnsafeUrl):
        resolve("ftp://127.0.0.1/hook")


@override_settings(WEBHOOKS_ALLOW_PRIVATE=False)
@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("https://8.8.8.8/hooks/café", "/hooks/caf%C3%A9"),
        ("https://8.8.8.8/hooks?team=Zürich&x=1", "/hooks?team=Z%C3%BCrich&x=1"),
        ("https://8.8.8.8/a%20b/c;v=1?q=a+b&r=%2F", "/a%20b/c;v=1?q=a+b&r=%2F"),  # as it was
        ("https://8.8.8.8/{x}|^", "/%7Bx%7D%7C%5E"),
    ],
)
def test_the_request_path_is_ascii_percent_encoded_as_a_browser_would(url, path):
    """http.client sends an ASCII request line: a URL people type with other characters is
    encoded, never left to fail every delivery."""
    assert resolve(url).path == path
