"""Finding 6: an IPv6 client is counted by its /64 in every per-client throttle.

The attack: 200 addresses inside one /64 (what one subscriber gets) each sent
a bad key, all got 401 and never 429, because each address had its own
counter. Now the /64 is the client; IPv4 clients are still counted by address.
"""

from __future__ import annotations

import ipaddress

import pytest
from django.conf import settings
from django.test import override_settings

from apps.apikeys.keyformat import KeyKind, generate
from core import throttling
from core.net import throttle_subject
from tests.factories import PASSWORD, UserFactory

LIMIT = 3
WINDOW = 3600
NETWORK = ipaddress.IPv6Network("2001:db8:1234:5678::/64")
CLIENT_SCOPES = sorted(scope for scope in settings.THROTTLE_RATES if scope.endswith("_ip"))


def addresses(network: ipaddress.IPv6Network, count: int) -> list[str]:
    """`count` different addresses spread over `network`, as a rotating client picks them."""
    step = (network.num_addresses - 1) // count
    return [str(network[1 + n * step]) for n in range(count)]


def rates(**scopes: int):
    return override_settings(
        THROTTLE_RATES={
            **settings.THROTTLE_RATES,
            **{scope: (limit, WINDOW) for scope, limit in scopes.items()},
        }
    )


@pytest.mark.parametrize(
    ("ip", "subject"),
    [
        ("198.51.100.7", "198.51.100.7"),
        ("2001:db8:1234:5678:9abc:def0:1:2", "2001:db8:1234:5678::/64"),
        ("2001:db8:1234:5678::1", "2001:db8:1234:5678::/64"),
        ("2001:db8:1234:5679::1", "2001:db8:1234:5679::/64"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
        ("::1", "::/64"),
        (None, None),
        ("", ""),
        ("not-an-ip", "not-an-ip"),
    ],
)
def test_the_throttle_subject_of_an_address(ip, subject):
    assert throttle_subject(ip) == subject
    assert throttle_subject(throttle_subject(ip)) == subject


def test_per_client_scopes_are_told_apart_from_per_account_ones():
    assert {"failed_auth_ip", "login_ip", "signup_ip", "refresh_ip"} <= set(CLIENT_SCOPES)
    assert all(throttling.is_client_scope(scope) for scope in CLIENT_SCOPES)
    assert not throttling.is_client_scope("login_account")
    assert not throttling.is_client_scope("mint_org")


@pytest.mark.parametrize("scope", CLIENT_SCOPES)
def test_every_per_client_scope_counts_a_slash_64_as_one_client(db, scope):
    rotating = addresses(NETWORK, LIMIT + 1)
    with rates(**{scope: LIMIT}):
        results = [throttling.hit(scope, ip) for ip in rotating]
        neighbour = throttling.hit(scope, "2001:db8:1234:5679::1")
        ipv4_neighbours = [throttling.hit(scope, f"198.51.100.{n}") for n in range(LIMIT + 1)]

    assert results[:LIMIT] == [None] * LIMIT
    assert results[LIMIT] is not None  # the /64 is over the limit
    assert neighbour is None  # the next /64 is another client
    assert ipv4_neighbours == [None] * (LIMIT + 1)  # IPv4 clients: one address each


@rates(failed_auth_ip=LIMIT)
def test_bad_keys_from_addresses_rotating_inside_a_slash_64_meet_429(db, api_client):
    codes = [
        api_client.get(
            "/v1/me", HTTP_AUTHORIZATION=f"Bearer {generate(KeyKind.SECRET)}", REMOTE_ADDR=ip
        ).status_code
        for ip in addresses(NETWORK, LIMIT + 2)
    ]

    assert codes == [401] * LIMIT + [429, 429]


@rates(login_ip=LIMIT)
def test_logins_from_addresses_rotating_inside_a_slash_64_meet_429(db, api_client):
    users = [UserFactory() for _ in range(LIMIT + 1)]
    codes = [
        api_client.post(
            "/v1/auth/login",
            {"email": user.email, "password": PASSWORD},
            format="json",
            REMOTE_ADDR=ip,
        ).status_code
        for user, ip in zip(users, addresses(NETWORK, LIMIT + 1), strict=True)
    ]

    assert codes == [200] * LIMIT + [429]


@pytest.mark.parametrize("remote", ["fe80::1%eth0", "fe80::1%2", " fe80::1%eth0 "])
def test_an_ipv6_zone_is_not_part_of_the_client_address(remote):
    """The zone names the server's interface: one link-local client is one address in the
    usage counters, the allowlists and the database (whose inet drops the zone)."""
    from django.test import RequestFactory

    from core.net import client_ip

    assert client_ip(RequestFactory().get("/", REMOTE_ADDR=remote)) == "fe80::1"
