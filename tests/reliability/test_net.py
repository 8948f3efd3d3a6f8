"""`client_ip` trusts `X-Forwarded-For` exactly as far as NUM_PROXIES says."""

from __future__ import annotations

import pytest
from django.test import RequestFactory, override_settings

from core.net import client_ip


def _request(remote: str = "10.0.0.1", forwarded: str | None = None):
    extra = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/v1/me", **extra)


@override_settings(NUM_PROXIES=0)
def test_without_proxies_forwarded_for_is_ignored():
    assert client_ip(_request("198.51.100.9", "203.0.113.1")) == "198.51.100.9"


@override_settings(NUM_PROXIES=1)
def test_one_proxy_trusts_only_the_rightmost_entry():
    request = _request("10.0.0.1", "1.1.1.1, 2.2.2.2 ,203.0.113.7")
    assert client_ip(request) == "203.0.113.7"


@override_settings(NUM_PROXIES=2)
def test_two_proxies_take_the_second_entry_from_the_right():
    request = _request("10.0.0.1", "1.1.1.1, 203.0.113.7, 10.0.0.2")
    assert client_ip(request) == "203.0.113.7"


@override_settings(NUM_PROXIES=2)
def test_fewer_entries_than_proxies_falls_back_to_the_peer_address():
    # The request skipped a proxy: nothing in the header is trustworthy.
    assert client_ip(_request("10.0.0.1", "203.0.113.7")) == "10.0.0.1"


@override_settings(NUM_PROXIES=1)
def test_missing_forwarded_for_behind_a_proxy_uses_the_peer_address():
    assert client_ip(_request("10.0.0.1")) == "10.0.0.1"


@override_settings(NUM_PROXIES=1)
@pytest.mark.parametrize("garbage", ["not-an-ip", "203.0.113.7:4711", "'; DROP TABLE", ","])
def test_unparseable_trusted_entry_falls_back_to_the_peer_address(garbage):
    assert client_ip(_request("10.0.0.1", f"1.1.1.1, {garbage}")) == "10.0.0.1"


@override_settings(NUM_PROXIES=1)
def test_ipv6_addresses_are_normalised():
    assert client_ip(_request("10.0.0.1", "2001:DB8:0:0::1")) == "2001:db8::1"


@override_settings(NUM_PROXIES=0)
@pytest.mark.parametrize("peer", ["::ffff:203.0.113.7", "::FFFF:CB00:7107"])
def test_an_ipv4_client_of_a_dual_stack_socket_is_its_ipv4_address(peer):
    assert client_ip(_request(peer)) == "203.0.113.7"


@override_settings(NUM_PROXIES=0)
def test_no_usable_address_at_all_is_none():
    assert client_ip(_request("")) is None
