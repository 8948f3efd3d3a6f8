"""Account security over HTTP against gunicorn (production settings) and a real SMTP server.

The checks of issue 18, as an outside client runs them: password reset, two-factor
login, sessions and invitations, following the links of the emails received.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import pyotp
import pytest
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from apps.accounts import mail
from core.permissions import Role
from tests.factories import PASSWORD, MembershipFactory, OrganizationFactory, UserFactory
from tests.outbound import WorkerProcess
from tests.reliability.helpers import bearer, call
from tests.servers import GunicornServer

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

NEW_PASSWORD = "a-fresh-passphrase-for-live"


def login(base: str, email: str, password: str = PASSWORD):
    return call(base, "POST", "/v1/auth/login", body={"email": email, "password": password})


def access_of(base: str, email: str, password: str = PASSWORD) -> str:
    reply = login(base, email, password)
    assert reply.status == 200, reply.body
    return reply.json["access"]


def path_of(link: str) -> str:
    return urlsplit(link).path


def reset_worker(base: str, mailbox) -> WorkerProcess:
    """The `run_worker` process that mails reset links (SPEC §4.13: the web process only
    queues the ask), with links to the server at `base`."""
    return WorkerProcess({"EMAIL_URL": mailbox.url, "SITE_URL": base}).start()


def test_password_reset_over_http(live_url, mailbox):
    user = UserFactory(email="reset-live@example.com")
    old_access = access_of(live_url, user.email)

    known = call(live_url, "POST", "/v1/auth/password-reset", body={"email": user.email})
    unknown = call(live_url, "POST", "/v1/auth/password-reset", body={"email": "x@example.com"})
    assert known.status == unknown.status == 202 and known.body == unknown.body
    worker = reset_worker(live_url, mailbox)
    try:
        [mail] = mailbox.wait_for(user.email, timeout=30)
        time.sleep(0.5)
        assert mailbox.messages("x@example.com") == []
    finally:
        worker.stop()

    link = mail.link("/reset/")
    assert link.startswith(live_url + "/reset/")
    opened = call(live_url, "GET", path_of(link))
    assert opened.status == 302 and opened.headers["location"] == "/reset/set-password/"
    cookie = f"ss_reset={opened.cookies['ss_reset']}"
    page = call(live_url, "GET", "/reset/set-password/", headers={"Cookie": cookie})
    assert page.status == 200 and b"Choose a new password" in page.body
    token = path_of(link).removeprefix("/reset/").removesuffix("/")
    body = {"token": token, "password": NEW_PASSWORD}
    assert call(live_url, "POST", "/v1/auth/password-reset/confirm", body=body).status == 204

    assert call(live_url, "GET", "/v1/me", headers=bearer(old_access)).status == 401
    assert login(live_url, user.email).status == 401
    assert login(live_url, user.email, NEW_PASSWORD).status == 200
    again = call(live_url, "POST", "/v1/auth/password-reset/confirm", body=body)
    assert again.status == 400 and again.code == "VALIDATION_ERROR"
    mailbox.wait_for(user.email, count=2)  # "your password was changed"


def until_closed(base: str, email: str) -> float:
    """Seconds from sending a reset ask to the server closing the connection (the answer
    read, `Connection: close`), as the audit that found the mail holding it timed it."""
    parts = urlsplit(base)
    body = json.dumps({"email": email}).encode()
    request = (
        f"POST /v1/auth/password-reset HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body
    with socket.create_connection((parts.hostname, parts.port), timeout=15) as conn:
        started = time.monotonic()
        conn.sendall(request)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
        elapsed = time.monotonic() - started
    assert received.startswith(b"HTTP/1.1 202"), received[:200]
    return elapsed


def test_the_reset_ask_holds_the_connection_alike_for_known_and_unknown_emails(live_url, mailbox):
    """With a mail server that takes 2 s, an existing account's ask held its connection (and
    the server's process) for the mail's 2 s, an unknown one's for milliseconds: the timing
    told who has an account. The web process now only queues the ask."""
    user = UserFactory(email="slow-mail@example.com")
    # An ask held by the mail server cannot close its connection before the server accepts
    # the message, however fast the host; one answered at once closes before that however
    # loaded the host (CI: four lanes on two cores), where a fixed bound of 3 s (2 s, 1 s
    # before) is only a guess. The delay stays under EMAIL_TIMEOUT (10 s).
    mailbox.delay = 6.0
    for email in (user.email, "nobody-slow@example.com"):
        elapsed = until_closed(live_url, email)
        assert elapsed < mailbox.delay, f"{email}: the connection closed after {elapsed:.2f} s"
    assert mailbox.messages() == []  # no mail before a worker runs, held ask or not
    worker = reset_worker(live_url, mailbox)
    try:
        mailbox.wait_for(user.email, timeout=30)
    finally:
        worker.stop()


def wait_until(condition, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen in {timeout} s"
        time.sleep(0.05)


def test_a_refused_reset_email_reaches_the_user_through_the_worker(live_url, mailbox):
    """The worker's first try is refused (451); its retry sends a new link."""
    user = UserFactory(email="retry-live@example.com")
    mailbox.refusing = 1
    reply = call(live_url, "POST", "/v1/auth/password-reset", body={"email": user.email})
    assert reply.status == 202
    retries = DBTaskResult.objects.filter(task_path=mail.resend_email.module_path)
    worker = reset_worker(live_url, mailbox)
    try:
        # the worker queues the retry, then tries (refused)
        wait_until(lambda: mailbox.refusing == 0 and retries.exists(), "the first try", 30)
        assert mailbox.messages() == []
        retries.update(run_after=timezone.now())  # due now, rather than in ~30 s
        [mail_] = mailbox.wait_for(user.email, timeout=30)
    finally:
        worker.stop()
    assert retries.get().status == "SUCCESSFUL"
    token = path_of(mail_.link("/reset/")).removeprefix("/reset/").removesuffix("/")
    body = {"token": token, "password": NEW_PASSWORD}
    assert call(live_url, "POST", "/v1/auth/password-reset/confirm", body=body).status == 204


def test_an_email_survives_the_web_worker_killed_while_it_sends(transactional_db, mailbox):
    """The mail server hangs mid-conversation and the web worker waiting on it (an
    invitation, sent after the answer) is killed (a deploy's SIGKILL, the OOM killer): the
    retry queued before the try reaches the invitee through the worker, and the killed try
    delivered nothing."""
    owner = UserFactory(email="inviter-killed@example.com")
    organization = OrganizationFactory(name="Killed Co")
    MembershipFactory(organization=organization, user=owner, role=Role.OWNER)
    server = GunicornServer(env={"EMAIL_URL": mailbox.url}, workers=1)
    server.env["SITE_URL"] = server.url
    server.start()
    try:
        owner_access = access_of(server.url, owner.email)
        mailbox.holding = True
        reply = call(
            server.url,
            "POST",
            f"/v1/organizations/{organization.id}/invitations",
            headers=bearer(owner_access),
            body={"email": "invitee-killed@example.com", "role": "member"},
        )
        assert reply.status == 201
        wait_until(lambda: mailbox.held == 1, "the server's try")
        master = server.process.pid
        [web_worker] = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        os.kill(int(web_worker), signal.SIGKILL)
        wait_until(lambda: not os.path.exists(f"/proc/{web_worker}/stat"), "the kill")
        mailbox.holding = False

        retries = DBTaskResult.objects.filter(task_path=mail.resend_email.module_path)
        [retry] = retries
        assert retry.status == "READY" and mailbox.messages() == []
        retries.update(run_after=timezone.now())  # due now, rather than in ~30 s
        worker = reset_worker(server.url, mailbox)
        try:
            [mail_] = mailbox.wait_for("invitee-killed@example.com", timeout=30)
        finally:
            worker.stop()
        assert retries.get().status == "SUCCESSFUL"
        token = path_of(mail_.link("/invitations/")).removeprefix("/invitations/")
        opened = call(server.url, "GET", f"/invitations/{token}")  # a link that works
        assert opened.status == 302 and opened.headers["location"] == "/invitations/open/"
    finally:
        mailbox.holding = False
        server.stop()


def test_two_factor_over_http(live_url):
    user = UserFactory(email="totp-live@example.com")
    access = access_of(live_url, user.email)
    setup = call(live_url, "POST", "/v1/auth/2fa/setup", headers=bearer(access))
    assert setup.status == 200
    totp = pyotp.TOTP(setup.json["secret"])
    if time.time() % 30 > 25:
        time.sleep(30 - time.time() % 30 + 0.1)
    code = totp.now()
    enable = call(
        live_url, "POST", "/v1/auth/2fa/enable", headers=bearer(access), body={"code": code}
    )
    assert enable.status == 200
    recovery = enable.json["recoveryCodes"]
    assert len(recovery) == 10

    first = login(live_url, user.email)
    assert first.status == 200 and first.json["mfaRequired"] is True
    assert "access" not in first.json
    replay = call(
        live_url,
        "POST",
        "/v1/auth/login/2fa",
        body={"mfaToken": first.json["mfaToken"], "code": code},
    )
    assert replay.status == 401 and replay.code == "INVALID_CREDENTIALS"  # used to enable
    done = call(  # the next step's code: within the ±1 step window, and not a replay
        live_url,
        "POST",
        "/v1/auth/login/2fa",
        body={"mfaToken": first.json["mfaToken"], "code": totp.at(time.time() + 30)},
    )
    assert done.status == 200 and set(done.json) == {"access", "refresh"}

    with_recovery = {"mfaToken": login(live_url, user.email).json["mfaToken"], "code": recovery[0]}
    assert call(live_url, "POST", "/v1/auth/login/2fa", body=with_recovery).status == 200
    reused = {"mfaToken": login(live_url, user.email).json["mfaToken"], "code": recovery[0]}
    assert call(live_url, "POST", "/v1/auth/login/2fa", body=reused).status == 401

    session = done.json["access"]
    wrong = call(
        live_url, "POST", "/v1/auth/2fa/disable", headers=bearer(session), body={"password": "no"}
    )
    assert wrong.status == 401
    off = call(
        live_url,
        "POST",
        "/v1/auth/2fa/disable",
        headers=bearer(session),
        body={"password": PASSWORD},
    )
    assert off.status == 204
    assert set(login(live_url, user.email).json) == {"access", "refresh"}


def test_sessions_over_http(live_url):
    user = UserFactory(email="sessions-live@example.com")
    mine = access_of(live_url, user.email)
    other = access_of(live_url, user.email)

    listed = call(live_url, "GET", "/v1/auth/sessions", headers=bearer(mine))
    assert listed.status == 200
    results = listed.json["results"]
    assert len(results) == 2
    [current] = [s for s in results if s["current"]]
    [theirs] = [s for s in results if not s["current"]]

    ended = call(live_url, "POST", f"/v1/auth/sessions/{theirs['id']}/end", headers=bearer(mine))
    assert ended.status == 204
    for _ in range(4):  # every worker refuses it at once
        assert call(live_url, "GET", "/v1/me", headers=bearer(other)).status == 401
        assert call(live_url, "GET", "/v1/me", headers=bearer(mine)).status == 200
    stranger = access_of(live_url, UserFactory().email)
    foreign = call(
        live_url, "POST", f"/v1/auth/sessions/{current['id']}/end", headers=bearer(stranger)
    )
    assert foreign.status == 404


def test_invitation_over_http(live_url, mailbox):
    owner = UserFactory(email="inviter-live@example.com")
    organization = OrganizationFactory(name="Live Co")
    MembershipFactory(organization=organization, user=owner, role=Role.OWNER)
    owner_access = access_of(live_url, owner.email)
    invitations = f"/v1/organizations/{organization.id}/invitations"

    created = call(
        live_url,
        "POST",
        invitations,
        headers=bearer(owner_access),
        body={"email": "invitee-live@example.com", "role": "member"},
    )
    assert created.status == 201
    [mail] = mailbox.wait_for("invitee-live@example.com")
    token = path_of(mail.link("/invitations/")).removeprefix("/invitations/").removesuffix("/")
    opened = call(live_url, "GET", f"/invitations/{token}/")
    assert opened.status == 302 and opened.headers["location"] == "/invitations/open/"

    stranger = access_of(live_url, UserFactory().email)
    refused = call(live_url, "POST", f"/v1/invitations/{token}/accept", headers=bearer(stranger))
    assert refused.status == 404 and refused.code == "NOT_FOUND"

    signup = call(
        live_url,
        "POST",
        "/v1/auth/signup",
        body={
            "email": "invitee-live@example.com",
            "password": "invitee-passphrase-2026",
            "organizationName": "Own",
        },
    )
    assert signup.status == 201
    invitee = signup.json["access"]
    accepted = call(live_url, "POST", f"/v1/invitations/{token}/accept", headers=bearer(invitee))
    assert accepted.status == 200
    assert accepted.json == {
        "organization": {"id": str(organization.id), "name": "Live Co"},
        "role": "member",
    }
    members = call(
        live_url,
        "GET",
        f"/v1/organizations/{organization.id}/members",
        headers=bearer(owner_access),
    )
    assert "invitee-live@example.com" in {m["user"]["email"] for m in members.json["results"]}
    pending = call(live_url, "GET", invitations, headers=bearer(owner_access))
    assert pending.json["results"] == []
