"""The SSRF guard at delivery time (SPEC §4.11): the address checked is the address connected
to, a name that resolves elsewhere since creation is refused, and a redirect goes nowhere.

Real receivers on 127.0.0.1; only DNS answers are faked (a public name resolving to a private
address, or a resolver that never answers, cannot be had otherwise), and no connection ever
leaves this machine.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from apps.apikeys.keyformat import KeyKind
from apps.webhooks import delivery as deliveries
from apps.webhooks import outbound, services, urlsafety
from apps.webhooks.models import Delivery, EventType, Webhook
from apps.webhooks.urlsafety import Target
from core.errors import ValidationFailed
from tests.factories import make_key
from tests.outbound import Receiver, self_signed_certificate

pytestmark = pytest.mark.django_db

HOST = "hooks.example.com"


@pytest.fixture
def dns(monkeypatch):
    """Faked answers for the names set in the returned dict (an address, or a list of them);
    every other name resolves as usual."""
    answers: dict[str, str | list[str]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host not in answers:
            return real(host, port, *args, **kwargs)
        addresses = answers[host]
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))
            if ":" in address
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))
            for address in ([addresses] if isinstance(addresses, str) else addresses)
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


def create_webhook(owner, organization):
    return services.create_webhook(
        actor=owner,
        organization=organization,
        url=f"https://{HOST}/hooks/sigsentry",
        events=list(EventType.values),
    )


def only_delivery() -> Delivery:
    return Delivery.objects.get()


@pytest.mark.parametrize("private", ["10.0.0.1", "127.0.0.1", "169.254.169.254", "fd00:ec2::254"])
def test_a_name_resolving_to_a_private_address_at_delivery_is_refused_without_connecting(
    dns, private, settings, owner, organization, project, monkeypatch
):
    """Public when the webhook was created, private when it is delivered (DNS rebinding):
    refused before any connection, recorded as such, and tried again later."""
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    dns[HOST] = "93.184.216.34"
    create_webhook(owner, organization)
    make_key(KeyKind.SECRET, project=project)
    dns[HOST] = private
    connections = []

    def no_connection(address, *args, **kwargs):
        connections.append(address)
        raise ConnectionRefusedError("this test allows no connection")

    with monkeypatch.context() as patch:
        patch.setattr(outbound.socket, "create_connection", no_connection)
        outcome = deliveries.attempt_delivery(str(only_delivery().pk))

    assert outcome == "address not allowed"
    assert connections == []
    delivery = only_delivery()
    assert (delivery.status, delivery.attempts, delivery.last_error) == (
        "pending",
        1,
        "address not allowed",
    )
    assert delivery.last_status_code is None


@pytest.mark.parametrize("private", ["10.0.0.1", "169.254.169.254", "::1"])
def test_a_name_with_one_private_address_among_public_ones_is_refused(dns, settings, private):
    """Every address the name resolves to is checked, not the first: the connection may go
    to any of them."""
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    dns[HOST] = ["8.8.8.8", private]

    with pytest.raises(urlsafety.UnsafeUrl):
        urlsafety.resolve(f"https://{HOST}/hooks/sigsentry")


def test_a_receiver_whose_certificate_no_authority_signed_is_a_tls_error(tmp_path, monkeypatch):
    """The receiver's certificate is verified: one that is not trusted gets nothing, and the
    same receiver, its certificate trusted (OpenSSL's SSL_CERT_FILE), gets the delivery."""
    certificate, key = self_signed_certificate(tmp_path, "localhost")
    receiver = Receiver(tls=(certificate, key))
    target = Target(
        "https", "localhost", receiver.server.server_address[1], "/hooks/sigsentry", ("127.0.0.1",)
    )
    try:
        untrusted = outbound.post(target, b"{}", {})
        requests_then = list(receiver.requests)
        monkeypatch.setenv("SSL_CERT_FILE", str(certificate))
        trusted = outbound.post(target, b"{}", {})
    finally:
        receiver.stop()

    assert untrusted == outbound.Outcome(None, "TLS error")
    assert requests_then == []
    assert trusted == outbound.Outcome(200, "")


def test_plain_http_connects_to_the_checked_address_not_the_host_name(receiver):
    """The host name is what the request names (Host header); the socket goes to the address
    the guard checked, even when the name would resolve to nothing (or elsewhere) now."""
    port = receiver.server.server_address[1]
    target = Target("http", "pinned.invalid", port, "/hooks/sigsentry", ("127.0.0.1",))

    assert outbound.post(target, b"{}", {}) == outbound.Outcome(200, "")

    [received] = receiver.requests
    assert received.path == "/hooks/sigsentry"
    assert received.headers["Host"] == f"pinned.invalid:{port}"


def test_https_connects_to_the_checked_address_and_names_the_host_in_sni_and_host(
    tmp_path, monkeypatch
):
    """The HTTPS twin: the socket goes to the checked address, while the TLS handshake (SNI,
    and the certificate verified against it) and the Host header name the URL's host, even
    when that name would resolve to nothing (or elsewhere) now."""
    certificate, key = self_signed_certificate(tmp_path, "pinned.invalid")
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate))
    receiver = Receiver(tls=(certificate, key))
    server_names: list[str | None] = []
    receiver.server.socket.context.sni_callback = lambda _sock, name, _ctx: server_names.append(
        name
    )
    port = receiver.server.server_address[1]
    target = Target("https", "pinned.invalid", port, "/hooks/sigsentry", ("127.0.0.1",))
    try:
        outcome = outbound.post(target, b"{}", {})
    finally:
        receiver.stop()

    assert outcome == outbound.Outcome(200, "")
    assert server_names == ["pinned.invalid"]
    [received] = receiver.requests
    assert received.path == "/hooks/sigsentry"
    assert received.headers["Host"] == f"pinned.invalid:{port}"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_with_a_location_is_a_failed_attempt_and_is_not_followed(
    make_webhook, project, status
):
    elsewhere = Receiver()
    redirecting = Receiver(status=status, headers={"Location": elsewhere.url})
    try:
        make_webhook(redirecting.url)
        make_key(KeyKind.SECRET, project=project)

        assert deliveries.attempt_delivery(str(only_delivery().pk)) == f"http {status}"

        assert len(redirecting.requests) == 1
        assert elsewhere.requests == []
        delivery = only_delivery()
        assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
            "pending",
            1,
            status,
        )
    finally:
        redirecting.stop()
        elsewhere.stop()


@pytest.fixture
def hanging_dns(monkeypatch):
    """`HOST` resolves only once the test ends (a resolver that does not answer); the wait
    for a lookup is cut to 0.2 s. Other names resolve as usual."""
    monkeypatch.setattr(urlsafety, "LOOKUP_TIMEOUT_SECONDS", 0.2)
    released, real = threading.Event(), socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host == HOST:
            released.wait(30)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield
    released.set()


def test_a_host_that_does_not_resolve_in_time_is_refused_at_creation(
    hanging_dns, settings, owner, organization
):
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    started = time.monotonic()

    with pytest.raises(ValidationFailed) as refused:
        create_webhook(owner, organization)

    assert time.monotonic() - started < 5  # the web worker is not held by the resolver
    assert refused.value.details["fields"]["url"] == [urlsafety.NOT_PUBLIC]
    assert not Webhook.objects.exists()


def test_a_host_lookup_that_hangs_at_delivery_is_a_failed_attempt_tried_again(
    dns, settings, owner, organization, project, monkeypatch
):
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    dns[HOST] = "93.184.216.34"
    create_webhook(owner, organization)
    make_key(KeyKind.SECRET, project=project)
    released = threading.Event()
    monkeypatch.setattr(urlsafety, "LOOKUP_TIMEOUT_SECONDS", 0.2)
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: released.wait(30))
    started = time.monotonic()
    try:
        outcome = deliveries.attempt_delivery(str(only_delivery().pk))
    finally:
        released.set()

    assert time.monotonic() - started < 5
    assert outcome == "host lookup timed out"
    delivery = only_delivery()
    assert (delivery.status, delivery.attempts, delivery.last_error) == (
        "pending",
        1,
        "host lookup timed out",
    )
