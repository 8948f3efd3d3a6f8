"""Account security in Chromium: password reset by email, two-factor set-up (the QR code must
scan) and login, the sessions list, and accepting an invitation from its email."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from urllib.parse import urlsplit

import pyotp
import pytest

from apps.accounts import twofactor
from apps.orgs.models import Membership
from core.permissions import Role
from tests.factories import PASSWORD
from tests.outbound import WorkerProcess

pytestmark = pytest.mark.browser

NEW_PASSWORD = "browser-reset-passphrase-2026"
WEBMAIL = "http://webmail.example.test/inbox"


def next_step_code(secret: str) -> str:
    """A code no earlier login used: the next step's (accepted within the ±1 step window)."""
    return pyotp.TOTP(secret).at(time.time() + 30)


def decode_qr(png_path) -> str:
    """The text of the QR code in a PNG, read by zbarimg (Debian's zbar-tools)."""
    result = subprocess.run(
        ["zbarimg", "--quiet", "--raw", str(png_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, f"zbarimg could not read the QR code: {result.stderr}"
    return result.stdout.strip()


def test_password_reset_from_the_login_page(ui, mailbox, owner):
    page = ui.page
    ui.goto("/login/")
    page.get_by_role("link", name="Forgot password?").click()
    page.wait_for_url(ui.url("/reset/"))
    page.get_by_label("Email", exact=True).fill(owner.email)
    ui.shot("password-reset-request")
    page.get_by_role("button", name="Send reset link").click()
    page.wait_for_url(ui.url("/login/"))
    page.get_by_text("If an account uses this email").wait_for()

    worker = WorkerProcess({"EMAIL_URL": mailbox.url, "SITE_URL": ui.base}).start()
    try:  # the worker mails the link (the server only queues the ask)
        [mail] = mailbox.wait_for(owner.email, timeout=30)
    finally:
        worker.stop()
    link = mail.link("/reset/")
    assert link.startswith(ui.base + "/reset/")
    token = urlsplit(link).path.removeprefix("/reset/").removesuffix("/")
    # clicked in a webmail (another site): the cookie that keeps the token must reach the
    # page the link redirects to (a SameSite=Strict one would not, after a cross-site click)
    page.route(
        WEBMAIL,
        lambda route: route.fulfill(
            content_type="text/html", body=f'<a href="{link}">Reset your password</a>'
        ),
    )
    page.goto(WEBMAIL)
    page.get_by_role("link", name="Reset your password").click()
    page.wait_for_url(ui.url("/reset/set-password/"))
    assert token not in page.url  # out of the address bar, the history and any Referer
    assert token not in page.content()
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    ui.shot("password-reset-confirm")
    page.get_by_role("button", name="Set new password").click()
    page.wait_for_url(ui.url("/login/"))
    page.get_by_text("Your password was changed.").wait_for()
    ui.login(owner.email, NEW_PASSWORD)

    ui.goto(urlsplit(link).path, status=400)  # used: it works once
    assert "This link no longer works" in page.inner_text("h1")
    ui.shot("password-reset-used-link")


def test_two_factor_setup_then_login_with_a_code(ui_factory, owner, project, tmp_path):
    ui = ui_factory(viewport={"width": 1280, "height": 900})
    page = ui.page
    ui.login(owner.email, PASSWORD)
    page.get_by_role("link", name="Account").click()
    page.wait_for_url(ui.url("/account/"))
    ui.shot("account")
    page.get_by_role("button", name="Set up two-factor authentication").click()
    page.locator("svg.qr-code").wait_for()
    ui.shot("account-2fa-setup")

    secret = page.locator("[data-totp-secret]").inner_text().replace(" ", "")
    assert secret == twofactor.pending_setup(owner).secret
    if shutil.which("zbarimg") or os.environ.get("CI"):  # CI installs it (.ci/run)
        qr_png = tmp_path / "account-2fa-qr.png"  # its own: other suites run beside this one
        page.locator("figure.qr-figure").screenshot(path=str(qr_png))
        assert pyotp.parse_uri(decode_qr(qr_png)).secret == secret

    page.get_by_label("Code from the app", exact=True).fill("000000")
    page.get_by_role("button", name="Turn on").click()
    page.get_by_text("That code is not right.").wait_for()
    page.get_by_label("Code from the app", exact=True).fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Turn on").click()
    dialog = page.locator("dialog[data-secret-dialog]")
    dialog.wait_for(state="visible")
    codes = dialog.locator("ol.recovery-codes li").all_inner_texts()
    assert len(codes) == 10
    assert page.url == ui.url("/account/")  # a reload does not post again
    ui.shot("account-2fa-recovery-codes")
    page.get_by_role("button", name="I have saved them").click()
    dialog.wait_for(state="detached")
    assert "On since" in page.locator("#two-factor").inner_text()
    ui.shot("account-2fa-on")

    second = ui_factory(viewport={"width": 390, "height": 844})
    second.goto("/login/")
    second.page.get_by_label("Email", exact=True).fill(owner.email)
    second.page.get_by_label("Password", exact=True).fill(PASSWORD)
    second.page.get_by_role("button", name="Log in").click()
    second.page.get_by_label("Authentication code", exact=True).wait_for()
    second.shot("login-2fa-narrow")
    second.page.get_by_label("Authentication code", exact=True).fill("123456")
    second.page.get_by_role("button", name="Verify").click()
    second.page.get_by_text("The code is not valid.").wait_for()
    second.page.get_by_label("Authentication code", exact=True).fill(next_step_code(secret))
    second.page.get_by_role("button", name="Verify").click()
    second.page.wait_for_url(second.url("/"))
    second.goto("/account/")
    second.shot("account-narrow")

    third = ui_factory()
    third.goto("/login/")
    third.page.get_by_label("Email", exact=True).fill(owner.email)
    third.page.get_by_label("Password", exact=True).fill(PASSWORD)
    third.page.get_by_role("button", name="Log in").click()
    third.page.get_by_label("Authentication code", exact=True).fill(codes[0])
    third.page.get_by_role("button", name="Verify").click()
    third.page.wait_for_url(third.url("/"))


def test_sessions_page_logs_out_another_browser(ui_factory, owner, project):
    laptop = ui_factory()
    laptop.login(owner.email, PASSWORD)
    phone = ui_factory(viewport={"width": 390, "height": 844})
    phone.login(owner.email, PASSWORD)
    tablet = ui_factory()
    tablet.login(owner.email, PASSWORD)

    laptop.goto("/account/")
    rows = laptop.page.locator("tr[data-session]")
    assert rows.count() == 3
    current = laptop.page.locator("tr.session-current")
    assert "This browser" in current.inner_text()
    laptop.page.locator("#sessions").scroll_into_view_if_needed()
    laptop.shot("account-sessions")

    other = laptop.page.locator("tr[data-session]:not(.session-current)").first
    other_id = other.get_attribute("data-session")
    other.get_by_role("button", name="Log out").click()
    laptop.page.get_by_text("That session was logged out.").wait_for()
    assert laptop.page.locator("tr[data-session]").count() == 2

    logged_out = [tab for tab in (phone, tablet) if _session_id(tab) == other_id]
    assert len(logged_out) == 1
    logged_out[0].page.goto(logged_out[0].url(f"/projects/{project.id}/"))
    logged_out[0].page.wait_for_url(lambda url: "/login/" in url)

    laptop.page.get_by_role("button", name="Log out everywhere else").click()
    confirm = laptop.page.locator("dialog[data-confirm-dialog]")
    confirm.get_by_role("button", name="Log out everywhere else").click()
    laptop.page.get_by_text("Logged out 1 other session.").wait_for()
    assert laptop.page.locator("tr[data-session]").count() == 1
    survivor = next(tab for tab in (phone, tablet) if tab is not logged_out[0])
    survivor.page.goto(survivor.url("/"))
    survivor.page.wait_for_url(lambda url: "/login/" in url)


def _session_id(tab) -> str:
    from apps.accounts import tokens

    access = tab.cookie("ss_access")
    return tokens.decode(access, "access")["sid"]


def test_invitation_from_the_members_page_to_a_new_account(
    ui_factory, owner, organization, mailbox
):
    admin_tab = ui_factory()
    admin_tab.login(owner.email, PASSWORD)
    page = admin_tab.page
    admin_tab.goto(f"/orgs/{organization.id}/members/")
    page.get_by_label("Email", exact=True).fill("browser-invitee@example.com")
    page.get_by_label("Role", exact=True).select_option("admin")
    page.get_by_role("button", name="Invite").click()
    page.get_by_text("Invitation sent to browser-invitee@example.com as Admin.").wait_for()
    assert page.locator("tr[data-invitation='browser-invitee@example.com']").count() == 1
    admin_tab.shot("members-invitations")

    [mail] = mailbox.wait_for("browser-invitee@example.com")
    path = urlsplit(mail.link("/invitations/")).path
    invitee = ui_factory(viewport={"width": 390, "height": 844})
    invitee.goto(path)
    invitee.page.wait_for_url(invitee.url("/invitations/open/"))
    token = path.removeprefix("/invitations/").removesuffix("/")
    assert token not in invitee.page.url and token not in invitee.page.content()
    assert "Acme" in invitee.page.inner_text("h1")
    invitee.shot("invitation-join-narrow")
    invitee.page.get_by_label("Password", exact=True).fill("invitee-browser-passphrase")
    invitee.page.get_by_role("button", name="Sign up and join").click()
    invitee.page.wait_for_url(invitee.url("/"))
    invitee.page.get_by_text("You joined Acme as Admin.").wait_for()
    assert "Acme" in invitee.page.inner_text("main")
    member = Membership.objects.get(organization=organization, user__email=mail.to[0])
    assert member.role == Role.ADMIN

    admin_tab.page.reload()
    assert page.locator("tr[data-invitation]").count() == 0
    assert page.locator("tr[data-member='browser-invitee@example.com']").count() == 1
    invitee.goto(path)  # the link again: they are a member now, and are told so
    assert "You are a member of Acme." in invitee.page.inner_text("main")


def test_sign_up_then_confirm_the_address_with_the_mailed_code(ui, mailbox):
    page = ui.page
    ui.goto("/signup/")
    page.get_by_label("Email", exact=True).fill("browser-signup@example.com")
    page.get_by_label("Password", exact=True).fill("browser-signup-passphrase")
    page.get_by_label("Organization name", exact=True).fill("Browser Co")
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url(ui.url("/"))
    notice = page.locator(".email-notice")
    assert "Confirm your email address" in notice.inner_text()

    notice.get_by_role("link", name="account page").click()
    page.wait_for_url(ui.url("/account/#email"))
    assert page.locator(".email-notice").count() == 0  # the page itself asks
    assert mailbox.messages("browser-signup@example.com") == []  # sign-up mailed nothing
    page.get_by_role("button", name="Send a code", exact=True).click()
    page.get_by_text("A code is on its way").wait_for()
    [mail] = mailbox.wait_for("browser-signup@example.com")
    [code] = re.findall(r"\b\d{6}\b", mail.text)
    page.get_by_label("Code from the email", exact=True).fill(code)
    ui.shot("account-email-code")
    page.get_by_role("button", name="Confirm", exact=True).click()

    page.get_by_text("Email address confirmed.").wait_for()
    assert "Confirmed" in page.locator("#email-heading").inner_text()
    ui.goto("/")
    assert page.locator(".email-notice").count() == 0
