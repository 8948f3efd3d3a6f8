"""Over HTTP with real parts: gunicorn, two `run_worker` processes, an SMTP server (aiosmtpd)
and HTTP receivers, all on 127.0.0.1 (SPEC §4.11, §4.12)."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import pytest
from django.utils import timezone

from apps.accounts import services as account_services
from apps.apikeys import keyformat
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from apps.audit.models import AuditEvent
from apps.webhooks import services as webhook_services
from apps.webhooks.models import Delivery
from tests.factories import OrganizationFactory, make_key
from tests.outbound import Receiver, SmtpSink, WorkerProcess, text_of, verify_signature
from tests.reliability.helpers import bearer, call
from tests.secretscanning.keys import SigningKey, write_keys
from tests.servers import AT_ALL, GunicornServer

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

#: SPEC §4.11: an event is delivered within 10 seconds while the worker runs. Measured on
#: the product's own timestamps (the event's `createdAt`, the delivery's `lastAttemptAt`,
#: written once the endpoint answered), not on the test's clock: that also counts the
#: test's requests and the worker's start-up, which a loaded host (CI: two suites on two
#: cores) stretches past the promise while the product keeps it.
DELIVERED_WITHIN = timedelta(seconds=10)
#: SPEC §4.11: leak-report emails within a minute, measured from the report's own record
#: (the revoked key's `revoked_at`) to each email's Date (written when it is sent).
EMAILED_WITHIN = timedelta(minutes=1)

ALL_EVENTS = [
    "key.minted",
    "key.revoked",
    "key.rolled",
    "key.updated",
    "key.revoked_by_leak_report",
    "key.leak_reported",
    "key.expiring",
    "key.unused",
]


@pytest.fixture(scope="module")
def github_key(tmp_path_factory):
    key = SigningKey.new("e2e-key-1")
    return key, write_keys(tmp_path_factory.mktemp("github") / "keys.json", key)


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker, github_key):
    with django_db_blocker.unblock():
        gunicorn = GunicornServer(
            env={
                "WEBHOOKS_ALLOW_PRIVATE": "true",
                "GITHUB_SECRET_SCANNING_KEYS": str(github_key[1]),
            }
        ).start()
    yield gunicorn
    gunicorn.stop()


@pytest.fixture(scope="module")
def smtp():
    sink = SmtpSink()
    yield sink
    sink.stop()


@pytest.fixture
def workers(smtp):
    """Start `run_worker` processes (two by default); all stopped after the test."""
    started: list[WorkerProcess] = []

    def start(count: int = 2) -> list[WorkerProcess]:
        new = [WorkerProcess({"EMAIL_URL": smtp.url}).start() for _ in range(count)]
        started.extend(new)
        return [worker.wait_started() for worker in new]

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def make(**kwargs) -> Receiver:
        made.append(Receiver(**kwargs))
        return made[-1]

    yield make
    for receiver in made:
        receiver.stop()


def token_for(user) -> dict[str, str]:
    return bearer(account_services.start_session(user).access)


def create_webhook(server, owner, organization, url):
    reply = call(
        server.url,
        "POST",
        f"/v1/organizations/{organization.id}/webhooks",
        headers=token_for(owner),
        body={"url": url, "events": ALL_EVENTS},
    )
    assert reply.status == 201, reply.body
    return reply.json


def deliveries_of(server, organization, webhook, auth) -> list[dict]:
    reply = call(
        server.url,
        "GET",
        f"/v1/organizations/{organization.id}/webhooks/{webhook['id']}/deliveries",
        headers=auth,
    )
    assert reply.status == 200, reply.body
    return reply.json["results"]


def test_four_mints_and_a_revoke_arrive_as_five_signed_deliveries(
    server, workers, receivers, owner, organization, project
):
    ok, failing = receivers(), receivers(status=500)
    hook = create_webhook(server, owner, organization, ok.url)
    broken = create_webhook(server, owner, organization, failing.url)
    workers(2)
    auth = token_for(owner)
    minted = []
    for path, body in [
        (f"/v1/projects/{project.id}/sdk-keys", {"name": "Web"}),
        (f"/v1/projects/{project.id}/api-keys", {"name": "CI", "permissions": ["analysis:read"]}),
        (f"/v1/projects/{project.id}/api-keys", {"name": "Cron", "permissions": ["config:read"]}),
        (
            f"/v1/organizations/{organization.id}/api-keys",
            {"name": "Ops", "permissions": ["config:write"]},
        ),
    ]:
        reply = call(server.url, "POST", path, headers=auth, body=body)
        assert reply.status == 201, reply.body
        minted.append(reply.json)
    revoke = call(
        server.url,
        "POST",
        f"/v1/projects/{project.id}/api-keys/{minted[1]['id']}/revoke",
        headers=auth,
    )
    assert revoke.status == 200

    arrived = ok.wait_for(5, timeout=AT_ALL)
    time.sleep(1.5)  # anything sent twice would arrive now
    assert len(ok.requests) == 5
    bodies = [json.loads(r.body) for r in ok.requests]
    assert len({b["id"] for b in bodies}) == 5
    assert sorted(b["type"] for b in bodies) == ["key.minted"] * 4 + ["key.revoked"]
    for request in arrived:
        assert verify_signature(
            request.headers["SigSentry-Signature"], request.body, hook["secret"]
        )
        for key in minted:
            assert key["key"] not in request.body.decode()
    revoked = next(b for b in bodies if b["type"] == "key.revoked")
    assert revoked["data"]["key"]["id"] == minted[1]["id"]
    assert revoked["data"]["key"]["status"] == "revoked"

    log = deliveries_of(server, organization, hook, auth)
    assert sorted((d["eventId"], d["status"], d["lastStatusCode"]) for d in log) == sorted(
        (b["id"], "delivered", 200) for b in bodies
    )
    created = {b["id"]: datetime.fromisoformat(b["createdAt"]) for b in bodies}
    took = {
        d["eventId"]: datetime.fromisoformat(d["lastAttemptAt"]) - created[d["eventId"]]
        for d in log
    }
    assert all(t < DELIVERED_WITHIN for t in took.values()), took

    deadline = time.monotonic() + AT_ALL  # the failing endpoint's first attempts, at all
    while any(d["attempts"] == 0 for d in deliveries_of(server, organization, broken, auth)):
        assert time.monotonic() < deadline, "the failing endpoint was never attempted"
        time.sleep(0.2)
    failing_log = deliveries_of(server, organization, broken, auth)
    assert len(failing_log) == 5
    assert {(d["status"], d["lastStatusCode"]) for d in failing_log} == {("pending", 500)}
    assert all(d["attempts"] >= 1 for d in failing_log)


def sent_at(message) -> datetime:
    """The Date Django gives an email as it sends it: UTC, written `-0000` (RFC 5322:
    no local time said), which Python reads as a naive time."""
    date = parsedate_to_datetime(str(message["Date"]))
    return date if date.tzinfo else date.replace(tzinfo=UTC)


def test_a_leak_report_emails_the_owner_and_never_the_key(server, workers, smtp, owner, project):
    secret, secret_text = make_key(KeyKind.SECRET, project=project, name="Payments server")
    sdk, sdk_text = make_key(KeyKind.PUBLIC, project=project, name="Storefront")
    workers(2)
    smtp.messages.clear()

    reply = call(server.url, "POST", "/v1/leaked-keys", body={"keys": [secret_text, sdk_text]})
    assert reply.status == 202

    def mine(message):
        return owner.email in str(message["To"])

    deadline = time.monotonic() + 2 * AT_ALL  # past the promise: it is measured below
    while time.monotonic() < deadline and len(smtp.to(owner.email)) < 2:
        time.sleep(0.2)
    messages = smtp.wait_for(mine, timeout=1)
    reported = ApiKey.objects.get(pk=secret.pk).revoked_at
    sent = [sent_at(m) for m in messages]
    assert all(at - reported < EMAILED_WITHIN for at in sent), (reported, sent)
    subjects = sorted(str(m["Subject"]) for m in messages)
    assert subjects == [
        "An API key of Acme revoked after a leak report",
        "An SDK key of Acme reported as leaked",
    ]
    text = "\n".join("\n".join(text_of(m)) for m in messages)
    assert "Payments server" in text and secret.prefix in text
    assert "Storefront" in text and sdk.prefix in text
    for message in messages:
        assert secret_text not in message.as_string() and sdk_text not in message.as_string()
    assert call(server.url, "GET", "/v1/me", headers=bearer(sdk_text)).status == 200
    assert call(server.url, "GET", "/v1/me", headers=bearer(secret_text)).status == 401


def test_the_worker_being_down_loses_nothing(server, workers, receivers, owner, organization):
    endpoint = receivers()
    create_webhook(server, owner, organization, endpoint.url)
    reply = call(
        server.url,
        "POST",
        f"/v1/organizations/{organization.id}/api-keys",
        headers=token_for(owner),
        body={"name": "While down", "permissions": ["analysis:read"]},
    )
    assert reply.status == 201
    time.sleep(1)
    assert endpoint.requests == []

    workers(1)

    [request] = endpoint.wait_for(1, timeout=AT_ALL)
    assert json.loads(request.body)["data"]["key"]["id"] == reply.json["id"]


def test_sigterm_lets_the_current_delivery_finish(
    receivers, workers, owner, organization, settings
):
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    slow = receivers(delay=3)
    webhook_services.create_webhook(
        actor=owner, organization=organization, url=slow.url, events=ALL_EVENTS
    )
    make_key(KeyKind.ORGANIZATION, organization=organization)
    [worker] = workers(1)
    deadline = time.monotonic() + AT_ALL
    while time.monotonic() < deadline and not slow.in_flight:
        time.sleep(0.05)
    assert slow.in_flight, worker.log()

    assert worker.terminate(timeout=20) == 0

    assert len(slow.requests) == 1
    assert Delivery.objects.get().status == "delivered"


def test_an_organizations_failing_endpoints_hold_one_worker_not_all(
    receivers, workers, owner, organization, settings
):
    """A workers audit: turns count attempts, not their time, so one organization's dead
    endpoints (10 s an attempt, retried for a day) held every worker and another
    organization's single event waited for them. At most one attempt of an organization to
    endpoints failing now is in flight (WEBHOOK_ATTEMPTS_PER_ORGANIZATION)."""
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    slow = [receivers(delay=5), receivers(delay=5)]
    healthy = receivers()
    other = OrganizationFactory()
    for endpoint in slow:
        webhook_services.create_webhook(
            actor=owner, organization=organization, url=endpoint.url, events=ALL_EVENTS
        )
    webhook_services.create_webhook(
        actor=owner, organization=other, url=healthy.url, events=ALL_EVENTS
    )
    make_key(KeyKind.ORGANIZATION, organization=organization)
    # both endpoints failing now: each has a retry waiting in its backoff
    retries = set(Delivery.objects.values_list("pk", flat=True))
    Delivery.objects.update(attempts=1, next_attempt_at=timezone.now() + timedelta(hours=1))
    first, second = workers(2)
    make_key(KeyKind.ORGANIZATION, organization=organization)  # two attempts to them
    deadline = time.monotonic() + AT_ALL
    while time.monotonic() < deadline and not any(endpoint.in_flight for endpoint in slow):
        time.sleep(0.05)
    time.sleep(1)  # the other worker has had time to take the second one, were it allowed
    assert sum(endpoint.in_flight for endpoint in slow) == 1, first.log() + second.log()

    make_key(KeyKind.ORGANIZATION, organization=other)

    assert len(healthy.wait_for(1, timeout=AT_ALL)) == 1
    assert sum(len(endpoint.wait_for(1, timeout=AT_ALL)) for endpoint in slow) == 2
    made = Delivery.objects.exclude(pk__in=retries)
    deadline = time.monotonic() + AT_ALL
    while time.monotonic() < deadline and made.exclude(status="delivered").exists():
        time.sleep(0.1)
    assert list(made.values_list("status", flat=True)) == ["delivered"] * 3
    # Not held: the other organization's delivery ended before the slow attempt in flight
    # when its event was made (the earlier of the two, 5 s long); held by it, it would have
    # ended after it. On the product's timestamps (`last_attempt_at`: when an attempt
    # ended), not a bound of 2.5 s from the event on the test's clock, which a loaded host
    # may exceed while a worker is free.
    mine = made.get(webhook__organization=other)
    slow_ended = min(made.exclude(pk=mine.pk).values_list("last_attempt_at", flat=True))
    assert mine.last_attempt_at < slow_ended, (mine.last_attempt_at, slow_ended)
    assert mine.last_attempt_at - mine.event.created_at < DELIVERED_WITHIN


def test_sigterm_between_tasks_stops_the_worker_and_says_so(workers):
    """Found by a soak audit: django-tasks' handler ends an idle worker with SystemExit,
    and its "stopped" line was never written."""
    [worker] = workers(1)  # started: its log says so
    time.sleep(0.5)  # idle: between tasks, waiting for the next

    assert worker.terminate(timeout=20) == 0

    assert re.search(r"worker \S+ stopped", worker.log()), worker.log()


def test_github_reports_over_http(server, github_key, project):
    key, _path = github_key
    _secret, secret_text = make_key(KeyKind.SECRET, project=project)
    _sdk, sdk_text = make_key(KeyKind.PUBLIC, project=project)
    stranger = keyformat.generate(KeyKind.SECRET)  # well-formed, never minted
    body = json.dumps(
        [
            {"token": t, "type": "sigsentry", "url": "https://github.com/a/b", "source": "content"}
            for t in (secret_text, sdk_text, stranger)
        ]
    ).encode()

    def send(payload: bytes, key_id: str, signature: str):
        return call(
            server.url,
            "POST",
            "/v1/secret-scanning/github",
            body=payload,
            headers={
                "Content-Type": "application/json",
                "Github-Public-Key-Identifier": key_id,
                "Github-Public-Key-Signature": signature,
            },
        )

    forged = send(body, key.identifier, SigningKey.new("forger").sign(body))
    unknown = send(body, "unknown-id", SigningKey.new("unknown-id").sign(body))
    tampered = send(body.replace(b"content", b"commit!"), key.identifier, key.sign(body))
    for reply in (forged, unknown, tampered):
        assert (reply.status, reply.code) == (401, "SIGNATURE_INVALID")
    assert not ApiKey.objects.filter(revoked_at__isnull=False).exists()
    assert not AuditEvent.objects.filter(action__contains="leak").exists()

    reply = send(body, key.identifier, key.sign(body))

    assert reply.status == 200
    assert [item["label"] for item in reply.json] == [
        "true_positive",
        "true_positive",
        "false_positive",
    ]
    assert call(server.url, "GET", "/v1/me", headers=bearer(secret_text)).status == 401
    assert call(server.url, "GET", "/v1/me", headers=bearer(sdk_text)).status == 200


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://10.0.0.1/hook",
        "https://192.168.1.1/hook",
        "https://169.254.169.254/latest/meta-data/",
        "http://8.8.8.8/hook",
        "ftp://8.8.8.8/hook",
    ],
)
def test_a_server_without_the_private_switch_refuses_unsafe_urls(
    gunicorn_server, owner, organization, url
):
    reply = call(
        gunicorn_server.url,
        "POST",
        f"/v1/organizations/{organization.id}/webhooks",
        headers=token_for(owner),
        body={"url": url, "events": ["key.minted"]},
    )

    assert (reply.status, reply.code) == (400, "VALIDATION_ERROR")
    assert "url" in reply.json["error"]["details"]["fields"]
