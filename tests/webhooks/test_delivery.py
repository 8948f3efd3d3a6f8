"""Delivering events (SPEC §4.11) to a real HTTP endpoint on 127.0.0.1, in process."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from django.utils.http import http_date
from django_tasks_db.models import DBTaskResult

from apps.apikeys.keyformat import KeyKind
from apps.apikeys.services import revoke_key
from apps.audit.models import AuditEvent
from apps.webhooks import crypto, outbound, urlsafety
from apps.webhooks import delivery as deliveries
from apps.webhooks import services as webhook_services
from apps.webhooks.models import Delivery, Event, EventType, Webhook
from apps.webhooks.urlsafety import Target
from tests.factories import OrganizationFactory, make_key
from tests.outbound import Receiver, verify_signature

pytestmark = pytest.mark.django_db


def only_delivery() -> Delivery:
    return Delivery.objects.select_related("event").get()


def test_a_mint_records_event_delivery_and_queued_task_in_its_transaction(
    make_webhook, receiver, project
):
    make_webhook(receiver.url)

    with pytest.raises(RuntimeError), transaction.atomic():
        make_key(KeyKind.SECRET, project=project)
        assert (Event.objects.count(), Delivery.objects.count()) == (1, 1)
        raise RuntimeError("the change is rolled back")

    assert (Event.objects.count(), Delivery.objects.count()) == (0, 0)
    assert not DBTaskResult.objects.filter(task_path__endswith="deliver_webhook").exists()

    make_key(KeyKind.SECRET, project=project)
    delivery = only_delivery()
    task = DBTaskResult.objects.get(task_path="apps.webhooks.delivery.deliver_webhook")
    assert task.args_kwargs == {"args": [str(delivery.pk)], "kwargs": {}}


def test_a_delivery_is_signed_and_carries_the_key_object_but_never_the_key(
    make_webhook, receiver, project, organization
):
    created = make_webhook(receiver.url)
    api_key, plaintext = make_key(KeyKind.SECRET, project=project, name="Deploy bot")

    assert deliveries.attempt_delivery(str(only_delivery().pk)) == "delivered"

    [request] = receiver.requests
    assert request.path == "/hooks/sigsentry"
    assert request.headers["Content-Type"] == "application/json"
    assert verify_signature(request.headers["SigSentry-Signature"], request.body, created.secret)
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", request.headers["SigSentry-Signature"])
    # The signing secret signs; it never travels, whole or without its `whsec_`.
    secret_part = created.secret.removeprefix(crypto.SECRET_PREFIX)
    assert created.secret.startswith(crypto.SECRET_PREFIX) and len(secret_part) == 32
    for sent in (request.body.decode(), *request.headers.values()):
        assert created.secret not in sent and secret_part not in sent
    assert set(request.headers) == {
        "Host",
        "Accept-Encoding",
        "Content-Length",
        "Content-Type",
        "User-Agent",
        "SigSentry-Signature",
    }
    body = json.loads(request.body)
    assert set(body) == {"id", "type", "createdAt", "organizationId", "data"}
    assert (body["type"], body["organizationId"]) == ("key.minted", str(organization.id))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", body["createdAt"])
    assert body["data"]["key"]["id"] == str(api_key.id)
    assert body["data"]["key"]["prefix"] == api_key.prefix
    assert body["data"]["key"]["name"] == "Deploy bot"
    assert "key" not in body["data"]["key"]  # the key object, never the plaintext `key`
    assert plaintext not in request.body.decode()
    assert plaintext[len(api_key.prefix) :] not in request.body.decode()
    delivery = only_delivery()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 200)
    assert str(delivery.event_id) == body["id"]


def test_a_signature_with_another_secret_does_not_verify(make_webhook, receiver, project):
    make_webhook(receiver.url)
    make_key(KeyKind.SECRET, project=project)
    deliveries.attempt_delivery(str(only_delivery().pk))

    [request] = receiver.requests
    other = make_webhook(receiver.url).secret
    assert not verify_signature(request.headers["SigSentry-Signature"], request.body, other)
    assert not verify_signature(
        request.headers["SigSentry-Signature"],
        request.body + b" ",
        make_webhook(receiver.url).secret,
    )


def test_a_webhook_made_before_a_secret_key_rotation_signs_with_its_secret(
    make_webhook, receiver, project, settings
):
    created = make_webhook(receiver.url)
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret-key-after-rotation-0123456789abcdefghij"
    make_key(KeyKind.SECRET, project=project)

    assert deliveries.attempt_delivery(str(only_delivery().pk)) == "delivered"
    [request] = receiver.requests
    assert verify_signature(request.headers["SigSentry-Signature"], request.body, created.secret)


def test_a_secret_sealed_under_a_key_no_longer_configured_fails_the_attempt_unsent(
    make_webhook, receiver, project, settings
):
    make_webhook(receiver.url)
    settings.SECRET_KEY = "a-new-secret-key-after-rotation-0123456789abcdefghij"
    make_key(KeyKind.SECRET, project=project)

    outcome = deliveries.attempt_delivery(str(only_delivery().pk))
    assert outcome == "secret unreadable (SECRET_KEY changed)"
    assert receiver.requests == []


def test_an_unreadable_secret_is_an_error_of_ours_and_never_disables_the_webhook(
    make_webhook, receiver, project, settings, caplog
):
    """Found by a restore drill under another SECRET_KEY: the hundredth such failure
    disabled a healthy webhook, logged at INFO, and its owners were told it was dead."""
    webhook = make_webhook(receiver.url).webhook
    Webhook.objects.filter(pk=webhook.pk).update(consecutive_failures=99)
    settings.SECRET_KEY = "a-new-secret-key-after-rotation-0123456789abcdefghij"
    make_key(KeyKind.SECRET, project=project)
    delivery = only_delivery()
    Event.objects.filter(pk=delivery.event_id).update(created_at=timezone.now() - timedelta(days=2))

    with caplog.at_level("INFO", logger="sigsentry.webhooks"):
        deliveries.attempt_delivery(str(delivery.pk))

    webhook.refresh_from_db()
    assert webhook.is_enabled and webhook.consecutive_failures == 99
    assert only_delivery().status == "failed"
    assert not AuditEvent.objects.filter(action="webhook.disabled").exists()
    [error] = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert "unreadable" in error and "reseal_secrets" in error
    assert receiver.requests == []


def test_a_failed_attempt_is_recorded_and_retried_later_with_the_same_event_id(
    make_webhook, project
):
    failing = Receiver(status=500)
    try:
        make_webhook(failing.url)
        make_key(KeyKind.SECRET, project=project)
        delivery = only_delivery()

        assert deliveries.attempt_delivery(str(delivery.pk)) == "http 500"
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
            "pending",
            1,
            500,
        )
        assert delivery.next_attempt_at > timezone.now() + timedelta(seconds=5)
        # woken when due, to be queued in its organization's turn
        wake = DBTaskResult.objects.get(task_path__endswith="wake_delivery")
        assert wake.run_after == delivery.next_attempt_at
        # Not due yet: a duplicate task does nothing.
        assert deliveries.attempt_delivery(str(delivery.pk)) == "skipped"

        Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
        assert deliveries.wake_delivery.call(str(delivery.pk)) == "queued at turn 1"
        # woken again (a sweep, a lost task): queued again in the same turn, not lost
        assert deliveries.wake_delivery.call(str(delivery.pk)) == "queued at turn 1"
        queued = DBTaskResult.objects.filter(task_path__endswith="deliver_webhook").latest(
            "enqueued_at"
        )
        assert queued.priority == deliveries.QUEUED_PRIORITY
        deliveries.attempt_delivery(str(delivery.pk))
        assert only_delivery().turn is None  # taken with the attempt
        ids = {json.loads(r.body)["id"] for r in failing.requests}
        assert ids == {str(delivery.event_id)} and len(failing.requests) == 2
    finally:
        failing.stop()


@pytest.mark.parametrize(
    ("status", "retry_after", "least", "most"),
    [
        (503, "600", 600, 601),
        (429, "http-date 900", 898, 901),
        (429, "999999999", 3600, 3600),  # an hour at most, the longest backoff
        (503, "0", 7.5, 12.5),  # never sooner than the backoff
        (500, "600", 7.5, 12.5),  # only a 429 or 503 asks for time
        (503, "soon", 7.5, 12.5),
    ],
)
def test_a_receiver_that_asks_for_time_gets_it(
    make_webhook, project, status, retry_after, least, most
):
    """Retry-After on a 429 or 503 (RFC 9110 §10.2.3) is honoured, up to an hour."""
    if retry_after.startswith("http-date "):
        seconds = int(retry_after.split()[1])
        retry_after = http_date(time.time() + seconds)
    failing = Receiver(status=status, headers={"Retry-After": retry_after})
    try:
        make_webhook(failing.url)
        make_key(KeyKind.SECRET, project=project)
        delivery = only_delivery()
        before = timezone.now()

        deliveries.attempt_delivery(str(delivery.pk))

        delivery.refresh_from_db()
        assert delivery.status == "pending" and delivery.last_status_code == status
        waited = (delivery.next_attempt_at - before).total_seconds()
        assert least <= waited <= most + 1
    finally:
        failing.stop()


def test_backoff_grows_exponentially_with_jitter_up_to_an_hour():
    for attempts, base in [(1, 10), (2, 20), (3, 40), (9, 2560), (12, 3600), (40, 3600)]:
        delays = {deliveries.retry_delay(attempts).total_seconds() for _ in range(20)}
        assert all(0.75 * base <= d <= 1.25 * base for d in delays)
        assert len(delays) > 1


def test_after_24_hours_of_failures_the_delivery_is_marked_failed(make_webhook, project):
    failing = Receiver(status=503)
    try:
        webhook = make_webhook(failing.url).webhook
        make_key(KeyKind.SECRET, project=project)
        Event.objects.update(created_at=timezone.now() - timedelta(hours=24, minutes=1))

        deliveries.attempt_delivery(str(only_delivery().pk))

        delivery = only_delivery()
        assert (delivery.status, delivery.last_status_code) == ("failed", 503)
        webhook.refresh_from_db()
        assert (webhook.consecutive_failures, webhook.is_enabled) == (1, True)
    finally:
        failing.stop()


def test_the_hundredth_failed_event_in_a_row_disables_the_webhook(
    make_webhook, project, organization
):
    failing = Receiver(status=500)
    try:
        webhook = make_webhook(failing.url).webhook
        Webhook.objects.filter(pk=webhook.pk).update(consecutive_failures=99)
        make_key(KeyKind.SECRET, project=project)
        make_key(KeyKind.SECRET, project=project)
        first, second = Delivery.objects.order_by("created_at", "id")
        Event.objects.filter(pk=first.event_id).update(
            created_at=timezone.now() - timedelta(days=2)
        )

        deliveries.attempt_delivery(str(first.pk))

        webhook.refresh_from_db()
        assert webhook.consecutive_failures == 100 and not webhook.is_enabled
        second.refresh_from_db()
        assert (second.status, second.last_error) == ("failed", "webhook disabled")
        audit = AuditEvent.objects.get(action="webhook.disabled")
        assert (audit.actor_type, audit.target_label) == ("system", "127.0.0.1")
        assert audit.organization_id == organization.id
    finally:
        failing.stop()


def test_a_success_resets_the_failure_count(make_webhook, receiver, project):
    webhook = make_webhook(receiver.url).webhook
    Webhook.objects.filter(pk=webhook.pk).update(consecutive_failures=42)
    make_key(KeyKind.SECRET, project=project)

    deliveries.attempt_delivery(str(only_delivery().pk))

    webhook.refresh_from_db()
    assert webhook.consecutive_failures == 0


def test_a_timeout_is_recorded_as_such(make_webhook, project, monkeypatch):
    slow = Receiver(delay=1.5)
    monkeypatch.setattr(outbound, "TIMEOUT_SECONDS", 0.5)
    try:
        make_webhook(slow.url)
        make_key(KeyKind.SECRET, project=project)

        assert deliveries.attempt_delivery(str(only_delivery().pk)) == "timeout"
        delivery = only_delivery()
        assert (delivery.status, delivery.last_status_code, delivery.last_error) == (
            "pending",
            None,
            "timeout",
        )
    finally:
        slow.stop()


class TricklingReceiver:
    """Answers a POST with `head`, then one byte every 0.1 s for `seconds`: each read is
    quick, the answer never ends. By default the bytes are the header's."""

    def __init__(self, seconds: float, head: bytes = b"HTTP/1.1 200 OK\r\n") -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/hooks/sigsentry"
        self.seconds = seconds
        self.head = head
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        connection, _ = self.server.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(self.head)
            end = time.monotonic() + self.seconds
            with contextlib.suppress(OSError):
                while time.monotonic() < end:
                    connection.sendall(b"X")
                    time.sleep(0.1)

    def stop(self) -> None:
        self.server.close()


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\n",  # then the headers a byte at a time
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Length: 1000\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
    ],
    ids=["headers", "connection-close", "http-1.0", "keep-alive"],
)
def test_an_answer_trickled_a_byte_at_a_time_is_cut_at_the_timeout(
    make_webhook, project, monkeypatch, head
):
    """The timeout bounds the whole attempt, not each read (a worker is never held). Found
    by a workers audit: an answer that closes the connection takes the socket from
    http.client's connection, which the timer cut; its body, a byte at a time, held a
    worker 16 minutes, and two other workers sent the same delivery meanwhile."""
    trickling = TricklingReceiver(seconds=8, head=head)
    monkeypatch.setattr(outbound, "TIMEOUT_SECONDS", 1.0)
    try:
        make_webhook(trickling.url)
        make_key(KeyKind.SECRET, project=project)

        started = time.monotonic()
        assert deliveries.attempt_delivery(str(only_delivery().pk)) == "timeout"
        assert time.monotonic() - started < 3
        assert only_delivery().last_error == "timeout"
    finally:
        trickling.stop()


def test_a_slow_host_lookup_comes_out_of_the_attempts_one_deadline(
    make_webhook, project, monkeypatch
):
    """A webhook's owner may run its DNS server: an answer just inside the lookup's 5 s,
    then a trickling receiver, held the worker 15 s (found by the SSRF audit).

    Timed from the lookup's start to the POST's end, the attempt's database work aside: a
    POST given its own 3 s after the 2.8 s lookup cannot end before 5.8 s however fast the
    host, one inside the attempt's 3 s ends at 3 s but for the timer's wake-up (a bound of
    4.5 s on the whole attempt failed on CI's loaded host with nothing wrong)."""
    lookup_seconds, timeout_seconds = 2.8, 3.0
    trickling = TricklingReceiver(seconds=30)
    monkeypatch.setattr(outbound, "TIMEOUT_SECONDS", timeout_seconds)
    lookup, post = urlsafety._lookup, outbound.post
    times = {}

    def slow_lookup(host, port):
        times["lookup"] = time.monotonic()
        time.sleep(lookup_seconds)
        return lookup(host, port)

    def timed_post(*args, **kwargs):
        try:
            return post(*args, **kwargs)
        finally:
            times["posted"] = time.monotonic()

    monkeypatch.setattr(urlsafety, "_lookup", slow_lookup)
    monkeypatch.setattr(outbound, "post", timed_post)
    try:
        make_webhook(trickling.url)
        make_key(KeyKind.SECRET, project=project)

        assert deliveries.attempt_delivery(str(only_delivery().pk)) == "timeout"
        assert times["posted"] - times["lookup"] < lookup_seconds + timeout_seconds
    finally:
        trickling.stop()


class TricklingTlsServer:
    """Accepts, then sends a TLS record header announcing 16 KB and one byte of it every
    0.05 s: each read of the handshake is quick, the handshake never ends."""

    def __init__(self, seconds: float) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.seconds = seconds
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            connection, _ = self.server.accept()
            with connection:
                connection.sendall(b"\x16\x03\x03\x40\x00")  # handshake record, 16,384 bytes
                end = time.monotonic() + self.seconds
                while time.monotonic() < end:
                    connection.sendall(b"\x00")
                    time.sleep(0.05)

    def stop(self) -> None:
        self.server.close()


def assert_cut_off_at_the_deadline(target: Target, server) -> None:
    """One POST to `target` (TIMEOUT_SECONDS patched to 1) ends as a timeout within 3 s."""
    try:
        started = time.monotonic()
        assert outbound.post(target, b"{}", {}) == outbound.Outcome(None, "timeout")
        assert time.monotonic() - started < 3
    finally:
        server.stop()


def test_a_tls_handshake_sent_a_byte_at_a_time_is_cut_off_at_the_timeout(monkeypatch):
    """The deadline holds during the TLS handshake too."""
    trickling = TricklingTlsServer(seconds=8)
    monkeypatch.setattr(outbound, "TIMEOUT_SECONDS", 1.0)
    target = Target("https", "hooks.example.com", trickling.port, "/", ("127.0.0.1",))
    assert_cut_off_at_the_deadline(target, trickling)


def test_an_answer_trickling_after_a_connect_that_outlasted_the_deadline_is_not_read(
    monkeypatch,
):
    """The timer fires while the connection is still being made (nothing to cut yet): the
    attempt stops once connected instead of reading a trickling answer a byte at a time."""
    trickling = TricklingReceiver(seconds=8)
    monkeypatch.setattr(outbound, "TIMEOUT_SECONDS", 1.0)
    connect = socket.create_connection

    def slow_connect(address, timeout=None, *args, **kwargs):
        time.sleep(1.2)  # a SYN lost and sent again, say
        return connect(address, timeout, *args, **kwargs)

    monkeypatch.setattr(outbound.socket, "create_connection", slow_connect)
    port = trickling.server.getsockname()[1]
    target = Target("http", "127.0.0.1", port, "/hooks/sigsentry", ("127.0.0.1",))
    assert_cut_off_at_the_deadline(target, trickling)


def test_a_path_with_other_than_ascii_characters_is_delivered_encoded(
    make_webhook, receiver, project
):
    make_webhook(receiver.url + "/café")
    make_key(KeyKind.SECRET, project=project)

    assert deliveries.attempt_delivery(str(only_delivery().pk)) == "delivered"

    assert [r.path for r in receiver.requests] == ["/hooks/sigsentry/caf%C3%A9"]


def test_redirects_are_not_followed(make_webhook, project):
    redirecting = Receiver(status=302)
    try:
        make_webhook(redirecting.url)
        make_key(KeyKind.SECRET, project=project)

        deliveries.attempt_delivery(str(only_delivery().pk))

        assert len(redirecting.requests) == 1
        assert only_delivery().last_status_code == 302
        assert only_delivery().status == "pending"
    finally:
        redirecting.stop()


def test_the_address_is_checked_again_at_delivery(make_webhook, receiver, project, settings):
    make_webhook(receiver.url)
    make_key(KeyKind.SECRET, project=project)
    settings.WEBHOOKS_ALLOW_PRIVATE = False

    assert deliveries.attempt_delivery(str(only_delivery().pk)) == "address not allowed"

    assert receiver.requests == []
    assert only_delivery().last_error == "address not allowed"


def test_only_one_worker_wins_the_lease(make_webhook, receiver, project):
    make_webhook(receiver.url)
    make_key(KeyKind.SECRET, project=project)
    delivery = only_delivery()
    delivery_id, organization_id = str(delivery.pk), delivery.event.organization_id
    now = timezone.now()

    assert deliveries._claim(delivery_id, organization_id, now) is deliveries.Claim.TAKEN
    assert deliveries._claim(delivery_id, organization_id, now) is deliveries.Claim.MISSED
    assert deliveries.attempt_delivery(delivery_id) == "skipped"
    assert receiver.requests == []


def test_only_subscribed_enabled_webhooks_of_the_organization_get_an_event(
    make_webhook, receiver, project, outsider
):
    revoked_only = make_webhook(receiver.url, events=[EventType.KEY_REVOKED]).webhook
    everything = make_webhook(receiver.url).webhook
    disabled = make_webhook(receiver.url).webhook
    Webhook.objects.filter(pk=disabled.pk).update(disabled_at=timezone.now())
    elsewhere = make_webhook(
        receiver.url,
        org=outsider.memberships.get().organization,
        actor=outsider,
    ).webhook

    api_key, _ = make_key(KeyKind.SECRET, project=project)
    revoke_key(actor=None, api_key=api_key)

    got = {(d.webhook_id, d.event.type) for d in Delivery.objects.select_related("event").all()}
    assert got == {
        (everything.id, "key.minted"),
        (everything.id, "key.revoked"),
        (revoked_only.id, "key.revoked"),
    }
    assert not Delivery.objects.filter(webhook__in=[disabled, elsewhere]).exists()


def test_an_attempt_whose_lease_ran_out_is_queued_again_at_the_next_sweep(
    make_webhook, receiver, project
):
    """A workers audit: a worker killed mid-attempt left its delivery leased and due two
    minutes before; the sweep waited until it was 5 minutes past due (6 min 21 s in all).
    An attempt still in its lease is left to its worker."""
    webhook = make_webhook(receiver.url).webhook
    make_key(KeyKind.SECRET, project=project)
    make_key(KeyKind.SECRET, project=project)
    lost, running = Delivery.objects.filter(webhook=webhook).order_by("created_at")
    now = timezone.now()
    Delivery.objects.filter(pk=lost.pk).update(
        next_attempt_at=now - timedelta(minutes=2), locked_until=now - timedelta(minutes=1)
    )
    Delivery.objects.filter(pk=running.pk).update(
        next_attempt_at=now - timedelta(minutes=2), locked_until=now + timedelta(seconds=50)
    )

    assert deliveries.requeue_overdue() == 1
    assert deliveries.requeue_overdue() == 0  # due now and unleased: not queued twice
    assert Delivery.objects.get(pk=lost.pk).locked_until is None
    assert deliveries.attempt_delivery(str(lost.pk)) == "delivered"
    assert deliveries.attempt_delivery(str(running.pk)) == "skipped"  # its worker's still


def test_a_lost_task_is_queued_again_and_a_duplicate_sends_once(make_webhook, receiver, project):
    make_webhook(receiver.url)
    make_key(KeyKind.SECRET, project=project)
    delivery = only_delivery()
    Delivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=timezone.now() - timedelta(minutes=10)
    )

    assert deliveries.requeue_overdue() == 1
    assert deliveries.requeue_overdue() == 0  # due now, not overdue: not queued twice

    for _ in range(2):
        deliveries.attempt_delivery(str(delivery.pk))
    assert len(receiver.requests) == 1


def test_a_delivery_stamped_by_a_clock_ahead_of_the_worker_is_queued_again_for_when_it_is_due(
    make_webhook, receiver, project
):
    make_webhook(receiver.url)
    make_key(KeyKind.SECRET, project=project)
    delivery = only_delivery()
    # The web process's clock ran 300 ms ahead of this worker's when it stamped the delivery.
    due = timezone.now() + timedelta(milliseconds=300)
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=due)
    tasks = DBTaskResult.objects.filter(task_path__endswith="deliver_webhook")
    tasks.delete()

    assert deliveries.attempt_delivery(str(delivery.pk)) == "not due: queued again"
    assert list(tasks.values_list("run_after", flat=True)) == [due]

    while timezone.now() < due:
        time.sleep(0.05)
    assert deliveries.attempt_delivery(str(delivery.pk)) == "delivered"
    assert len(receiver.requests) == 1


def test_a_task_of_an_attempt_already_made_is_not_queued_again(make_webhook, project):
    failing = Receiver(status=500)
    try:
        make_webhook(failing.url)
        make_key(KeyKind.SECRET, project=project)
        delivery = only_delivery()
        assert deliveries.attempt_delivery(str(delivery.pk)) == "http 500"  # retry in 7.5 s+
        tasks = DBTaskResult.objects.filter(task_path__endswith="deliver_webhook")
        queued = tasks.count()

        assert deliveries.attempt_delivery(str(delivery.pk)) == "skipped"  # a duplicate task
        assert tasks.count() == queued
    finally:
        failing.stop()


@pytest.mark.parametrize("final", [False, True], ids=["retried", "final attempt"])
def test_a_webhook_deleted_during_an_attempt_ends_it_quietly(
    make_webhook, project, monkeypatch, final
):
    failing = Receiver(status=500)
    try:
        created = make_webhook(failing.url)
        make_key(KeyKind.SECRET, project=project)
        delivery = only_delivery()
        if final:
            Event.objects.update(created_at=timezone.now() - timedelta(days=2))
        tasks = DBTaskResult.objects.filter(task_path__endswith="deliver_webhook")
        queued = tasks.count()
        post = outbound.post

        def post_then_delete(*args, **kwargs):
            outcome = post(*args, **kwargs)
            webhook_services.delete_webhook(actor=None, webhook=created.webhook)
            return outcome

        monkeypatch.setattr(outbound, "post", post_then_delete)

        assert deliveries.attempt_delivery(str(delivery.pk)) == "http 500"
        assert not Delivery.objects.exists()
        assert tasks.count() == queued  # no retry queued for what is gone
    finally:
        failing.stop()


def test_a_delivery_of_a_webhook_disabled_since_it_was_queued_is_not_sent(
    make_webhook, receiver, project
):
    created = make_webhook(receiver.url)
    make_key(KeyKind.SECRET, project=project)
    # disabled without its pending deliveries failed: what a disable racing the claim leaves
    Webhook.objects.filter(pk=created.webhook.pk).update(disabled_at=timezone.now())

    deliveries.attempt_delivery(str(only_delivery().pk))

    assert receiver.requests == []
    assert only_delivery().status == "failed"


def test_a_failing_endpoint_never_holds_up_another_organizations_delivery(
    make_webhook, receiver, project, organization
):
    """The worker runs one task at a time, and an attempt may hold it 10 s: a first
    attempt to an endpoint that answers is queued ahead of retries and of first attempts
    to an endpoint failing now, which wait in their organization's turns, so one
    organization's dead endpoints (retried for a day) never keep another's delivery
    waiting behind their backlog."""
    other = OrganizationFactory()
    dead = make_webhook("http://127.0.0.1:9/never-answers").webhook
    healthy = make_webhook(receiver.url, org=other).webhook
    make_key(KeyKind.SECRET, project=project)  # A's first event: its endpoint still looks fine
    first = Delivery.objects.get(webhook=dead)
    first_task = DBTaskResult.objects.get(args_kwargs__args=[str(first.pk)])
    assert first_task.priority == deliveries.FIRST_ATTEMPT_PRIORITY
    first_task.delete()
    deliveries.deliver_webhook.call(str(first.pk))  # refused: retried later, in its turn
    Delivery.objects.filter(pk=first.pk).update(next_attempt_at=timezone.now())  # now due
    deliveries.wake_delivery.call(str(first.pk))
    DBTaskResult.objects.filter(task_path__endswith="wake_delivery").delete()

    make_key(KeyKind.SECRET, project=project)  # A again: to a failing endpoint, behind
    make_key(KeyKind.ORGANIZATION, organization=other)  # B, after A's

    ready = [task.args_kwargs["args"][0] for task in DBTaskResult.objects.ready()]
    b_delivery = str(Delivery.objects.get(webhook=healthy).pk)
    assert ready[0] == b_delivery  # B's first attempt runs first
    assert len(ready) == 3 and set(ready[1:]) == {
        str(d.pk) for d in Delivery.objects.filter(webhook=dead)
    }


def test_many_new_endpoints_of_one_organization_wait_behind_anothers_next_delivery(
    make_webhook, receiver, project, organization
):
    """The audit's case: four fresh endpoints of one organization that accept and never
    answer (10 s each) held another organization's delivery for 40 s. Only an
    organization's first new attempt goes ahead; the rest of its attempts wait behind
    another organization's next one, so that one waits for one attempt at most."""
    other = OrganizationFactory()
    for n in range(4):
        make_webhook(f"http://127.0.0.1:9/silent-{n}")
    healthy = make_webhook(receiver.url, org=other).webhook

    make_key(KeyKind.SECRET, project=project)  # A: four deliveries
    make_key(KeyKind.SECRET, project=project)  # A again, its first attempts still waiting
    make_key(KeyKind.ORGANIZATION, organization=other)  # B, last

    ready = [task.args_kwargs["args"][0] for task in DBTaskResult.objects.ready()]
    b_delivery = str(Delivery.objects.get(webhook=healthy).pk)
    assert len(ready) == 9
    assert ready.index(b_delivery) == 1  # behind A's first attempt only
    priorities = sorted(task.priority for task in DBTaskResult.objects.ready())
    assert priorities == [deliveries.QUEUED_PRIORITY] * 7 + [deliveries.FIRST_ATTEMPT_PRIORITY] * 2


def test_queued_first_attempts_take_turns_between_organizations(
    make_webhook, receiver, project, organization
):
    """A fairness audit: past each organization's first, attempts ran first in, first
    out, and another organization's second webhook waited 8 minutes behind one
    organization's backlog. The n-th waiting attempt of each runs before the n+1-th of any."""
    other = OrganizationFactory()
    for n in range(4):
        make_webhook(f"http://127.0.0.1:9/silent-{n}")
    for _ in range(2):
        make_webhook(receiver.url, org=other)

    make_key(KeyKind.SECRET, project=project)  # A: four deliveries
    make_key(KeyKind.SECRET, project=project)  # A again: four more, queued behind
    make_key(KeyKind.ORGANIZATION, organization=other)  # B: two, the second queued

    ready = [task.args_kwargs["args"][0] for task in DBTaskResult.objects.ready()]
    b_deliveries = {str(d.pk) for d in Delivery.objects.filter(webhook__organization=other)}
    assert len(ready) == 10
    # A's first, B's first (ahead), then turn 1: A's second, B's second; then A's rest
    assert [n for n, task in enumerate(ready) if task in b_deliveries] == [1, 3]


def test_a_retry_and_the_next_event_to_a_failing_endpoint_take_turns_too(
    make_webhook, project, organization
):
    """A fairness audit: another organization's endpoint failed once; its retry, due in
    10 s, ran after 350 s and its next event after 22 minutes, both first in, first out
    behind one organization's backlog. Both wait in their organization's turn now."""
    other = OrganizationFactory()
    for n in range(4):
        make_webhook(f"http://127.0.0.1:9/silent-{n}")
    blip = make_webhook("http://127.0.0.1:9/blip", org=other).webhook
    make_key(KeyKind.ORGANIZATION, organization=other)  # B's event, ahead
    [b_first] = Delivery.objects.filter(webhook=blip)
    deliveries.attempt_delivery(str(b_first.pk))  # refused once: retried later
    DBTaskResult.objects.all().delete()  # its task, and its wake-up, run below by hand
    for _ in range(3):
        make_key(KeyKind.SECRET, project=project)  # A: 12 deliveries, 11 in turns 1 to 11
    Delivery.objects.filter(pk=b_first.pk).update(next_attempt_at=timezone.now())

    deliveries.wake_delivery.call(str(b_first.pk))  # B's retry is due
    make_key(KeyKind.ORGANIZATION, organization=other)  # B's next event, to the same endpoint

    ready = [task.args_kwargs["args"][0] for task in DBTaskResult.objects.ready()]
    b_ids = [str(d.pk) for d in Delivery.objects.filter(webhook=blip).order_by("created_at")]
    assert len(ready) == 14
    # A's first ahead; then turn 1: A's, B's retry; turn 2: A's, B's next event
    assert [ready.index(b) for b in b_ids] == [2, 4]


def test_a_lost_attempt_in_its_turn_is_queued_again_in_that_turn(make_webhook, project):
    """A review of the wake-ups: one that found a turn set skipped, so an attempt lost with
    a worker (or come to a worker whose clock runs behind) stayed pending for good."""
    webhook = make_webhook("http://127.0.0.1:9/never").webhook
    make_key(KeyKind.SECRET, project=project)
    make_key(KeyKind.SECRET, project=project)  # the second waits in turn 1
    second = Delivery.objects.filter(webhook=webhook).latest("created_at")
    assert second.turn == 1
    DBTaskResult.objects.all().delete()  # the tasks lost with a worker
    Delivery.objects.update(next_attempt_at=timezone.now() - timedelta(minutes=10))

    assert deliveries.requeue_overdue() == 2
    for wake in DBTaskResult.objects.filter(task_path__endswith="wake_delivery"):
        deliveries.wake_delivery.call(*wake.args_kwargs["args"])

    queued = DBTaskResult.objects.filter(
        task_path__endswith="deliver_webhook", args_kwargs__args=[str(second.pk)]
    ).get()
    assert queued.priority == deliveries.QUEUED_PRIORITY
    assert queued.run_after == deliveries.TURNS_FROM + timedelta(seconds=1)

    # and one come to a worker whose clock runs behind is woken when due, in its turn
    due = timezone.now() + timedelta(milliseconds=300)
    Delivery.objects.filter(pk=second.pk).update(next_attempt_at=due)
    assert deliveries.attempt_delivery(str(second.pk)) == "not due: queued again"
    wake = DBTaskResult.objects.filter(task_path__endswith="wake_delivery").latest("enqueued_at")
    assert wake.run_after == due
    assert deliveries.wake_delivery.call(str(second.pk)) == "queued at turn 1"


def test_an_organizations_queued_attempts_keep_their_order_as_the_queue_drains(
    make_webhook, project
):
    """A review of the turns: numbered by how many waited, a new event took a turn freed
    by attempts made since and overtook older ones of its own organization (which could
    starve). Turns follow the organization's last one."""
    webhook = make_webhook("http://127.0.0.1:9/silent").webhook
    for _ in range(4):
        make_key(KeyKind.SECRET, project=project)  # one ahead, turns 1, 2 and 3 queued
    made = list(Delivery.objects.filter(webhook=webhook).order_by("created_at", "id")[:2])
    Delivery.objects.filter(pk__in=[d.pk for d in made]).update(
        attempts=1, status="delivered"
    )  # the first two were delivered
    DBTaskResult.objects.filter(args_kwargs__args__0__in=[str(d.pk) for d in made]).delete()

    make_key(KeyKind.SECRET, project=project)  # a fifth event

    ready = [task.args_kwargs["args"][0] for task in DBTaskResult.objects.ready()]
    oldest_first = Delivery.objects.filter(webhook=webhook, status="pending").order_by(
        "created_at", "id"
    )
    assert ready == [str(d.pk) for d in oldest_first]
    assert [d.turn for d in oldest_first] == [2, 3, 4]


def failing_now(delivery: Delivery) -> None:
    """In flight on another worker, as a retry: its endpoint is failing now."""
    Delivery.objects.filter(pk=delivery.pk).update(
        attempts=1, locked_until=timezone.now() + deliveries.LEASE
    )


def test_an_organizations_attempts_to_failing_endpoints_wait_for_its_one_in_flight(
    make_webhook, receiver, project, organization
):
    """A workers audit: turns count attempts, not their time, so an organization whose
    endpoints were dead held every worker, 10 s an attempt retried for a day, and another
    organization's single event waited 8 s. One organization has at most
    WEBHOOK_ATTEMPTS_PER_ORGANIZATION (1) attempts to endpoints failing now in flight; the
    rest wait, without a task, until one of them ends."""
    other = OrganizationFactory()
    make_webhook(receiver.url)
    b_endpoint = Receiver()
    try:
        make_webhook(b_endpoint.url, org=other)
        make_key(KeyKind.SECRET, project=project)
        make_key(KeyKind.SECRET, project=project)  # A's second waits in turn 1
        make_key(KeyKind.ORGANIZATION, organization=other)
        first, second = Delivery.objects.filter(webhook__organization=organization).order_by(
            "created_at"
        )
        b_delivery = Delivery.objects.get(webhook__organization=other)
        DBTaskResult.objects.all().delete()  # run by hand below
        failing_now(first)

        assert deliveries.attempt_delivery(str(second.pk)).startswith("parked")
        assert deliveries.attempt_delivery(str(b_delivery.pk)) == "delivered"
        assert receiver.requests == [] and len(b_endpoint.requests) == 1
        parked = Delivery.objects.get(pk=second.pk)
        assert parked.parked_at is not None and parked.turn == 1 and parked.attempts == 0
        assert not DBTaskResult.objects.exists()
        # the sweep leaves it to the attempt in flight, however long it waited
        Delivery.objects.filter(pk=second.pk).update(
            next_attempt_at=timezone.now() - timedelta(minutes=10)
        )
        assert deliveries.requeue_overdue() == 0

        Delivery.objects.filter(pk=first.pk).update(locked_until=None)  # it ended elsewhere:
        assert deliveries.attempt_delivery(str(first.pk)) == "delivered"  # this one hands on

        [task] = DBTaskResult.objects.ready()
        assert task.args_kwargs["args"] == [str(second.pk)]
        assert task.priority == deliveries.QUEUED_PRIORITY
        assert task.run_after == deliveries.TURNS_FROM + timedelta(seconds=1)
        assert Delivery.objects.get(pk=second.pk).parked_at is None
        assert deliveries.attempt_delivery(str(second.pk)) == "delivered"
        assert len(receiver.requests) == 2
    finally:
        b_endpoint.stop()


def test_an_endpoint_that_answers_is_never_held_back_by_its_organizations_failing_one(
    make_webhook, receiver, project
):
    """A review: with every attempt of an organization counted, a healthy webhook waited
    for its sibling's dead endpoint, past SPEC §4.11's 10 seconds."""
    dead = make_webhook("http://127.0.0.1:9/hangs").webhook
    make_webhook(receiver.url)
    make_key(KeyKind.SECRET, project=project)
    failing_now(Delivery.objects.get(webhook=dead))
    healthy = Delivery.objects.exclude(webhook=dead).get()

    assert deliveries.attempt_delivery(str(healthy.pk)) == "delivered"


def test_a_parked_delivery_is_queued_again_once_no_attempt_of_its_organization_is_in_flight(
    make_webhook, project, organization
):
    """The attempt a parked delivery waits for may die with its worker: its lease runs out,
    and the sweep queues both."""
    make_webhook("http://127.0.0.1:9/never")
    make_key(KeyKind.SECRET, project=project)
    make_key(KeyKind.SECRET, project=project)
    first, second = Delivery.objects.order_by("created_at")
    now = timezone.now()
    failing_now(first)
    assert deliveries.attempt_delivery(str(second.pk)).startswith("parked")
    Delivery.objects.filter(pk=second.pk).update(next_attempt_at=now - timedelta(minutes=10))
    assert deliveries.requeue_overdue() == 0

    Delivery.objects.filter(pk=first.pk).update(locked_until=now - timedelta(seconds=1))

    assert deliveries.requeue_overdue() == 2
    assert Delivery.objects.get(pk=second.pk).parked_at is None


def test_more_places_in_flight_per_organization_can_be_allowed(
    make_webhook, receiver, project, settings
):
    settings.WEBHOOK_ATTEMPTS_PER_ORGANIZATION = 2
    make_webhook(receiver.url)
    make_key(KeyKind.SECRET, project=project)
    make_key(KeyKind.SECRET, project=project)
    first, second = Delivery.objects.order_by("created_at")
    failing_now(first)

    assert deliveries.attempt_delivery(str(second.pk)) == "delivered"


@pytest.mark.parametrize(
    "header",
    [None, "", "garbage", "t=1", "v1=ab", "t=abc,v1=ab", "t=1,v1=é", "t=,v1=", "t=1;v1=2"],
)
def test_the_readmes_verification_refuses_a_malformed_header_without_raising(header):
    """Found by a fault-injection audit: the README's example raised on a missing or
    malformed header (a receiver's 500) instead of answering False."""
    assert verify_signature(header, b"{}", "whsec_x") is False
