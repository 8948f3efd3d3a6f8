"""Issue 14's "How it will be checked", over HTTP against a production-configured server.

One gunicorn for the module: DEBUG=false, NUM_PROXIES=1 (each request names its
client in X-Forwarded-For, as the proxy would), the production throttle rates,
the suite's database (PostgreSQL in CI) and Redis when REDIS_URL is set (else
one worker, so its in-memory counters see every request). The settings module
is `sigsentry.test_settings`: the production settings with a test secret and a
fast password hasher, and static files served without a collected manifest.

The in-process tests of each finding live beside this file (test_emails.py,
test_admin_login.py, ...); these replay the reviewer's attacks end to end.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable
from typing import TypeVar

import pytest
from django.conf import settings

from apps.accounts import services as account_services
from apps.apikeys.keyformat import KeyKind, generate
from apps.audit.models import AuditEvent
from tests.factories import PASSWORD, MembershipFactory, UserFactory, make_key
from tests.reliability.helpers import Reply, bearer, call
from tests.servers import ROOT, GunicornServer

pytestmark = pytest.mark.slow

LONG_S = "\u017f"
DOTLESS_I = "\u0131"
T = TypeVar("T")


@pytest.fixture(scope="module")
def production_server(django_db_setup, django_db_blocker):
    env = {"DEBUG": "false", "NUM_PROXIES": "1", "HTTPS_ONLY": "false"}
    with django_db_blocker.unblock():
        server = GunicornServer(env=env, workers=2 if settings.REDIS_URL else 1)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def server(production_server, transactional_db) -> str:
    return production_server.url


def from_client(ip: str, headers: dict[str, str] | None = None) -> dict[str, str]:
    """Headers as the one trusted proxy sends them: the client's address appended last."""
    return {"X-Forwarded-For": f"10.255.0.1, {ip}", **(headers or {})}


def in_one_window(period: int, burst: Callable[[int], T]) -> T:
    """`burst`'s result, from a run that fell in one fixed throttle window, so its counts
    add up (the server's windows are `time.time() // period`).

    `burst` is given its attempt (0, then 1) and must use accounts and clients of its own
    for each: a run that crossed a window's edge is run once more, right after that edge,
    with fresh ones. A burst lasts seconds and a window a minute or more, so the second
    run fits; no run waits for a window to start.
    """
    for attempt in range(2):
        window = time.time() // period
        result = burst(attempt)
        if time.time() // period == window:
            return result
    raise AssertionError(f"two bursts in a row crossed the edge of a {period} s window")


def fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


# 1. The weak legacy import fails without echoing the key ---------------------------------------


def test_a_weak_legacy_import_fails_without_echoing_the_key(server, production_server, project):
    csv = ROOT / "test-artifacts" / f"weak-legacy-{project.id}.csv"
    weak = "tb_Ab3dE6gH"
    csv.write_text(f"key,project_id,name,permissions\n{weak},{project.id},old,\n")
    try:
        run = subprocess.run(
            [sys.executable, "manage.py", "import_legacy_keys", str(csv)],
            cwd=ROOT,
            env=production_server.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        csv.unlink()

    assert run.returncode != 0
    assert "line 2" in run.stderr and "too short" in run.stderr
    assert weak not in run.stdout + run.stderr
    viewer = MembershipFactory(organization=project.organization, role="viewer").user
    listed = call(
        server,
        "GET",
        f"/v1/projects/{project.id}/api-keys",
        headers=bearer(account_services.start_session(viewer).access),
    )
    assert listed.status == 200 and listed.json["results"] == []
    assert call(server, "GET", "/v1/me", headers=bearer(weak)).status == 401


# 2. Look-alike spellings and rotating clients meet the per-account limit ----------------------


def test_wrong_logins_over_look_alike_spellings_and_16_clients_lock_the_right_password(server):
    def burst(attempt: int) -> tuple[list[Reply], Reply]:
        UserFactory(email=f"sasha.kim{attempt}@example.com")
        spellings = [
            f"sasha.kim{attempt}@example.com",
            f"SASHA.KIM{attempt}@EXAMPLE.COM",
            f"{LONG_S}asha.kim{attempt}@example.com",
            f"sasha.k{DOTLESS_I}m{attempt}@example.com",
            fullwidth(f"sasha.kim{attempt}@example.com"),
            f"Sa{LONG_S}ha.Kim{attempt}@Example.com",
        ]
        wrong = [
            call(
                server,
                "POST",
                "/v1/auth/login",
                headers=from_client(f"198.51.{100 + attempt}.{n + 1}"),
                body={"email": spellings[n % len(spellings)], "password": "wrong-password"},
            )
            for n in range(16)
        ]
        right = call(
            server,
            "POST",
            "/v1/auth/login",
            headers=from_client(f"198.51.{100 + attempt}.200"),
            body={"email": fullwidth(f"SASHA.KIM{attempt}@example.com"), "password": PASSWORD},
        )
        return wrong, right

    wrong, right = in_one_window(settings.THROTTLE_RATES["login_account"][1], burst)

    assert {r.status for r in wrong} <= {401, 429}
    assert wrong[0].code == "INVALID_CREDENTIALS"
    assert [r.code for r in wrong].count("RATE_LIMITED") >= 16 - 10
    assert (right.status, right.code) == (429, "RATE_LIMITED")
    assert int(right.header("Retry-After")) > 0
    assert "access" not in right.json


# 3. The admin login -----------------------------------------------------------------------------


class Browser:
    """Cookies and the CSRF token across plain HTTP calls, as a browser keeps them."""

    def __init__(self, url: str, ip: str) -> None:
        self.url, self.ip, self.cookies = url, ip, {}

    def request(self, method: str, path: str, form: dict[str, str] | None = None) -> Reply:
        headers = from_client(self.ip)
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            body = urllib.parse.urlencode(form).encode()
        reply = call(self.url, method, path, headers=headers, body=body)
        self.cookies.update({k: v for k, v in reply.cookies.items() if v})
        return reply

    def admin_login(self, email: str, password: str) -> Reply:
        page = self.request("GET", "/admin/login/?next=/admin/")
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.body).group(1)
        form = {
            "csrfmiddlewaretoken": token.decode(),
            "username": email,
            "password": password,
            "next": "/admin/",
        }
        return self.request("POST", "/admin/login/?next=/admin/", form)

    def is_in_the_admin(self) -> bool:
        return self.request("GET", "/admin/").status == 200


def test_after_40_wrong_admin_logins_the_right_one_does_not_get_in(server):
    def burst(attempt: int) -> tuple[list[Reply], Reply, Browser]:
        email = f"ops{attempt}@example.com"
        UserFactory(email=email, is_staff=True, is_superuser=True)
        wrong = [
            Browser(server, f"203.0.{113 + attempt}.{n + 1}").admin_login(email, "wrong-password")
            for n in range(40)
        ]
        browser = Browser(server, f"203.0.{113 + attempt}.200")
        return wrong, browser.admin_login(email, PASSWORD), browser

    wrong, right, browser = in_one_window(settings.THROTTLE_RATES["login_account"][1], burst)

    assert wrong[0].status == 200  # the form again, with the usual error
    assert [r.status for r in wrong].count(429) >= 40 - 10
    assert right.status == 429
    assert "sessionid" not in browser.cookies
    assert not browser.is_in_the_admin()


def test_wrong_admin_logins_from_one_client_lock_it_out_too(server):
    def burst(attempt: int) -> tuple[list[Reply], Reply, Browser]:
        email = f"ops-b{attempt}@example.com"
        UserFactory(email=email, is_staff=True, is_superuser=True)
        browser = Browser(server, f"203.0.114.{9 + attempt}")
        replies = [browser.admin_login(f"guess{n}@example.com", "wrong") for n in range(40)]
        return replies, browser.admin_login(email, PASSWORD), browser

    replies, right, browser = in_one_window(settings.THROTTLE_RATES["login_ip"][1], burst)

    assert replies[-1].status == 429
    assert right.status == 429
    assert not browser.is_in_the_admin()


# 4. Admin filters on secret fields --------------------------------------------------------------


def test_the_three_admin_filters_answer_400(server, project, owner):
    UserFactory(email="staff@example.com", is_staff=True, is_superuser=True)
    make_key(KeyKind.SECRET, project=project)
    account_services.start_session(owner)
    browser = Browser(server, "192.0.2.77")
    assert browser.admin_login("staff@example.com", PASSWORD).status == 302
    assert browser.is_in_the_admin()

    filters = [
        "/admin/apikeys/apikey/?digest__startswith=a",
        "/admin/accounts/authsession/?refresh_jti__startswith=a",
        "/admin/accounts/authsession/?password_fingerprint__startswith=a",
    ]
    assert [browser.request("GET", path).status for path in filters] == [400, 400, 400]
    assert browser.request("GET", "/admin/apikeys/apikey/?type__exact=secret").status == 200


# 5. Bad keys from one IPv6 /64 ------------------------------------------------------------------


def test_75_bad_keys_from_one_slash_64_in_a_minute_meet_a_429(server):
    def burst(attempt: int) -> tuple[list[str], ipaddress.IPv6Network]:
        network = ipaddress.IPv6Network(f"2001:db8:77:{1 + 16 * attempt:x}::/64")
        codes = [
            call(
                server,
                "GET",
                "/v1/me",
                headers=from_client(str(network[n * 7919 + 1]), bearer(generate(KeyKind.SECRET))),
            ).code
            for n in range(75)
        ]
        return codes, network

    codes, network = in_one_window(settings.THROTTLE_RATES["failed_auth_ip"][1], burst)

    assert codes[0] == "KEY_INVALID"
    assert "RATE_LIMITED" in codes
    assert codes.count("KEY_INVALID") <= settings.THROTTLE_RATES["failed_auth_ip"][0]
    next_64 = network.network_address + 2**64 + 1  # an address of the next /64
    other_network = from_client(str(next_64), bearer(generate(KeyKind.SECRET)))
    assert call(server, "GET", "/v1/me", headers=other_network).code == "KEY_INVALID"


# 6. A leak report: the secret key revoked, the SDK key working, both audited --------------------


def test_a_leak_report_revokes_the_secret_key_and_leaves_the_sdk_key_working(
    server, project, owner
):
    _, sdk_key = make_key(KeyKind.PUBLIC, project=project)
    _, secret_key = make_key(KeyKind.SECRET, project=project)
    access = account_services.start_session(owner).access

    report = call(
        server,
        "POST",
        "/v1/leaked-keys",
        headers=from_client("198.51.100.99"),
        body={"keys": [secret_key, sdk_key]},
    )

    assert (report.status, report.json) == (202, {"received": 2})
    assert call(server, "GET", "/v1/me", headers=bearer(secret_key)).code == "KEY_REVOKED"
    assert call(server, "GET", "/v1/me", headers=bearer(sdk_key)).status == 200
    events = call(
        server,
        "GET",
        f"/v1/organizations/{project.organization_id}/audit-events",
        headers=bearer(access),
    ).json["results"]
    by_action = {event["action"]: event for event in events}
    assert {"key.revoked_by_leak_report", "key.leak_reported"} <= set(by_action)
    assert by_action["key.leak_reported"]["ip"] is None  # the reporter's: for operators only
    assert AuditEvent.objects.get(action="key.leak_reported").ip == "198.51.100.99"
