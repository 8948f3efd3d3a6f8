"""The dashboard in Chromium: sign-up to revoked key, login and logout, roles, sessions."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from apps.accounts import services as account_services
from apps.accounts.cookies import ACCESS_COOKIE, REFRESH_COOKIE
from apps.accounts.models import User
from apps.accounts.templatetags.dashboard import utc_text
from apps.analyses.models import Analysis
from apps.apikeys import keyformat
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from apps.projects.models import Project
from core.permissions import Role
from tests.browser.conftest import TIMEOUT_MS, call_api
from tests.factories import (
    PASSWORD,
    MembershipFactory,
    OrganizationFactory,
    ProjectFactory,
    make_key,
)

pytestmark = pytest.mark.browser

STRONG_PASSWORD = "browser-tests-passphrase-2026"


def mint_from_page(ui, path: str, name: str, permissions=(), shot: str | None = None) -> str:
    """Create a key on a key page; return the full key read from the dialog's <code>."""
    ui.goto(path)
    page = ui.page
    page.get_by_label("Name", exact=True).fill(name)
    for permission in permissions:
        page.get_by_label(permission, exact=True).check()
    page.get_by_role("button", name="Create key").click()
    dialog = page.locator("dialog[data-secret-dialog]")
    dialog.wait_for(state="visible")
    assert page.evaluate("document.querySelector('dialog[data-secret-dialog]').matches(':modal')")
    assert "will not be shown again" in dialog.inner_text()
    key = dialog.locator("code[data-secret]").inner_text().strip()
    assert page.url == ui.url(path), "the POST result must be replaced by the list's URL"
    if shot:
        ui.shot(shot)
    return key


def row_for(ui, name: str):
    return ui.page.locator("tr.key-row", has_text=name)


def close_dialog(ui) -> None:
    ui.page.get_by_role("button", name="I have copied it").click()
    ui.page.locator("dialog[data-secret-dialog]").wait_for(state="detached")


def test_signup_to_revoked_key(ui):
    page = ui.page
    ui.goto("/signup/")
    ui.shot("signup")
    page.get_by_label("Email", exact=True).fill("founder@example.com")
    page.get_by_label("Password", exact=True).fill(STRONG_PASSWORD)
    page.get_by_label("Organization name", exact=True).fill("Browser Co")
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url(ui.url("/"))
    assert "Browser Co" in page.inner_text("main")
    ui.shot("home-new-account")

    page.get_by_label("Project name").fill("Storefront")
    with page.expect_request(lambda request: "/v1/analyses" in request.url) as analyses:
        page.get_by_role("button", name="Create project").click()
    project = Project.objects.get(name="Storefront")
    assert page.url == ui.url(f"/projects/{project.id}/")
    request = analyses.value
    assert request.headers["x-project-id"] == str(project.id)
    assert request.response().status == 200
    page.get_by_text("No analyses yet").wait_for()
    ui.shot("project-overview")

    # SDK key: locked permissions, shown once, works, then revoked.
    sdk_path = f"/projects/{project.id}/sdk-keys/"
    ui.goto(sdk_path)
    for permission in ("analysis:create", "analysis:read"):
        box = page.get_by_label(permission, exact=True)
        assert box.is_checked() and box.is_disabled()
    for permission in ("config:read", "config:write"):
        assert page.get_by_label(permission, exact=True).is_disabled()
    ui.shot("sdk-keys-empty")
    sdk_key = mint_from_page(ui, sdk_path, "Web shop", shot="sdk-key-created")
    assert sdk_key.startswith("ss_pub_")
    page.get_by_role("button", name="Copy").click()
    assert page.evaluate("navigator.clipboard.readText()") == sdk_key
    status, body, _ = call_api(ui.base, "/v1/me", sdk_key)
    assert status == 200 and body["key"]["type"] == "public"
    assert sorted(body["key"]["permissions"]) == ["analysis:create", "analysis:read"]

    page.reload()
    assert page.locator("dialog[data-secret-dialog]").count() == 0
    assert sdk_key not in page.content()
    ui.shot("sdk-keys")

    confirm = page.locator("dialog[data-confirm-dialog]")
    row_for(ui, "Web shop").get_by_role("button", name="Revoke").click()
    confirm.get_by_role("button", name="Cancel").click()
    confirm.wait_for(state="hidden")
    assert call_api(ui.base, "/v1/me", sdk_key)[0] == 200  # cancelled: nothing happened
    row_for(ui, "Web shop").get_by_role("button", name="Revoke").click()
    confirm.get_by_role("button", name="Revoke key").click()
    page.get_by_text("It stopped working.").wait_for()
    assert "Revoked" in row_for(ui, "Web shop").inner_text()
    status, body, _ = call_api(ui.base, "/v1/me", sdk_key)
    assert status == 401 and body["error"]["code"] == "KEY_REVOKED"

    # Project API key with chosen permissions.
    api_path = f"/projects/{project.id}/api-keys/"
    secret = mint_from_page(
        ui, api_path, "CI", permissions=("analysis:read", "config:read"), shot="api-key-created"
    )
    assert secret.startswith("ss_secret_")
    status, body, _ = call_api(ui.base, "/v1/me", secret)
    assert status == 200 and body["key"]["permissions"] == ["analysis:read", "config:read"]
    assert body["project"]["id"] == str(project.id)
    close_dialog(ui)
    ui.shot("api-keys")

    # Organization key, then rolled from the page with a grace period.
    org_path = f"/orgs/{project.organization_id}/api-keys/"
    org_key = mint_from_page(ui, org_path, "Reporting", permissions=("analysis:read",))
    status, body, _ = call_api(ui.base, "/v1/me", org_key)
    assert status == 200 and body["key"]["scope"] == "organization"
    close_dialog(ui)
    row_for(ui, "Reporting").get_by_role("button", name="Roll Reporting").click()
    ui.shot("org-key-roll-choices")
    page.get_by_label("24 hours").check()
    page.get_by_role("button", name="Roll key").click()
    page.locator("dialog[data-secret-dialog]").wait_for(state="visible")
    rolled = page.locator("code[data-secret]").inner_text().strip()
    assert page.url == ui.url(org_path)
    assert rolled.startswith("ss_org_") and rolled != org_key
    ui.shot("org-key-rolled")
    assert call_api(ui.base, "/v1/me", rolled)[0] == 200
    assert call_api(ui.base, "/v1/me", org_key)[0] == 200  # within its grace period
    page.reload()
    old_row = ui.page.locator(f"tr.key-row[data-prefix='{keyformat.display_prefix(org_key)}']")
    assert "Expiring" in old_row.inner_text()
    assert (
        f"replaces {keyformat.display_prefix(org_key)}"
        in row_for(ui, "Reporting").first.inner_text()
    )
    ui.shot("org-api-keys")


def test_login_errors_logout_and_dead_cookies(ui, owner):
    page = ui.page
    ui.goto("/login/")
    ui.shot("login")
    page.get_by_label("Email", exact=True).fill(owner.email)
    page.get_by_label("Password", exact=True).fill("not-the-password")
    page.get_by_role("button", name="Log in").click()
    page.get_by_text("The email or password is incorrect.").wait_for()
    assert page.get_by_role("alert").inner_text().strip() == "The email or password is incorrect."
    ui.shot("login-error")
    page.get_by_label("Email", exact=True).fill("nobody@example.com")
    page.get_by_label("Password", exact=True).fill("not-the-password")
    page.get_by_role("button", name="Log in").click()
    page.get_by_text("The email or password is incorrect.").wait_for()

    ui.login(owner.email, PASSWORD)
    old_cookies = page.context.cookies()
    access = ui.cookie(ACCESS_COOKIE)
    assert access and ui.cookie(REFRESH_COOKIE)
    assert call_api(ui.base, "/v1/me", access)[0] == 200
    assert owner.email in page.locator("header.topbar").inner_text()

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(ui.url("/login/"))
    assert page.get_by_role("status").inner_text().strip() == "You have been logged out."
    ui.shot("logged-out")
    assert ui.cookie(ACCESS_COOKIE) is None
    status, body, _ = call_api(ui.base, "/v1/me", access)
    assert status == 401 and body["error"]["code"] == "TOKEN_INVALID"
    page.context.add_cookies(old_cookies)
    ui.goto("/")
    assert page.url.startswith(ui.url("/login/"))


def test_login_returns_to_the_page_asked_for(ui, owner, project):
    ui.goto(f"/projects/{project.id}/api-keys/")
    assert ui.page.url == ui.url(f"/login/?next=%2Fprojects%2F{project.id}%2Fapi-keys%2F")
    ui.page.get_by_label("Email", exact=True).fill(owner.email)
    ui.page.get_by_label("Password", exact=True).fill(PASSWORD)
    ui.page.get_by_role("button", name="Log in").click()
    ui.page.wait_for_url(ui.url(f"/projects/{project.id}/api-keys/"))


def test_viewer_sees_lists_without_controls_and_error_pages(ui, viewer, project):
    ui.login(viewer.email, PASSWORD)
    page = ui.page
    for path, name in (
        (f"/projects/{project.id}/sdk-keys/", "sdk-keys-viewer"),
        (f"/projects/{project.id}/api-keys/", None),
        (f"/orgs/{project.organization_id}/api-keys/", None),
    ):
        ui.goto(path)
        assert page.get_by_role("button", name="Create key").count() == 0
        assert page.get_by_role("button", name="Revoke").count() == 0
        if name:
            ui.shot(name)
    assert page.get_by_role("link", name="Audit log").count() == 0
    ui.goto(f"/orgs/{project.organization_id}/audit-log/", status=403)
    assert "Not allowed" in page.inner_text("h1")
    ui.shot("error-403")
    ui.goto("/projects/00000000-0000-0000-0000-000000000000/", status=404)
    assert "Page not found" in page.inner_text("h1")
    ui.shot("error-404")


def test_switchers_and_narrow_screen(ui_factory, owner, project, other_project):
    second = OrganizationFactory(name="Second Org")
    MembershipFactory(organization=second, user=owner, role=Role.MEMBER)
    ProjectFactory(organization=second, name="Side project")
    wide = ui_factory()
    wide.login(owner.email, PASSWORD)
    wide.goto(f"/projects/{project.id}/")
    wide.page.locator("summary", has_text="Project").click()
    wide.page.get_by_role("link", name=other_project.name).click()
    wide.page.wait_for_url(wide.url(f"/projects/{other_project.id}/"))
    wide.page.locator("summary", has_text="Organization").click()
    wide.shot("org-switcher")
    wide.page.get_by_role("link", name="Second Org").click()
    wide.page.wait_for_url(re.compile(r".*/projects/[0-9a-f-]+/$"))
    assert "Side project" in wide.page.inner_text("main")

    narrow = ui_factory(viewport={"width": 390, "height": 844})
    narrow.login(owner.email, PASSWORD)
    toggle = narrow.page.locator("[data-nav-toggle]")
    assert toggle.is_visible()
    side_link = narrow.page.locator("[data-nav]").get_by_role("link", name="Members")
    assert not side_link.is_visible()
    narrow.shot("home-narrow")
    toggle.click()
    assert side_link.is_visible()
    assert toggle.get_attribute("aria-expanded") == "true"
    narrow.shot("home-narrow-menu")
    narrow.goto(f"/projects/{project.id}/api-keys/")
    narrow.shot("api-keys-narrow")
    width = narrow.page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, "nothing may overflow the viewport sideways"

    make_key(KeyKind.ORGANIZATION, organization=project.organization, actor=owner)
    narrow.goto(f"/orgs/{project.organization_id}/audit-log/")
    narrow.shot("audit-log-narrow")
    assert narrow.page.locator(".audit-table td[data-label='Details']").first.is_visible()
    for box in (".table-wrap", "html"):  # each event a card: no table to scroll sideways
        width = narrow.page.eval_on_selector(box, "element => element.scrollWidth")
        assert width <= 390, f"{box} overflows the viewport sideways"


def test_open_tab_refreshes_its_session_before_expiry(ui, owner):
    ui.page.clock.install()
    ui.login(owner.email, PASSWORD)
    first_access = ui.cookie(ACCESS_COOKIE)
    with ui.page.expect_response(lambda response: "/v1/auth/refresh" in response.url) as refreshed:
        ui.page.clock.fast_forward("23:56:00")
    response = refreshed.value
    assert response.status == 200
    assert response.request.headers.get("x-csrftoken")
    assert ui.cookie(ACCESS_COOKIE) not in (None, first_access)
    assert call_api(ui.base, "/v1/me", ui.cookie(ACCESS_COOKIE))[0] == 200
    assert User.objects.get(pk=owner.pk).auth_sessions.get().last_refreshed_at is not None

    # A session ended elsewhere (password change, logout in another tab): the tab says so,
    # once it has tried again twice (another tab may have just rotated the pair).
    User.objects.get(pk=owner.pk).auth_sessions.update(ended_at=timezone.now())
    for wait in ("24:00:00", "00:05", "00:05"):
        with ui.page.expect_response(lambda response: "/v1/auth/refresh" in response.url) as failed:
            ui.page.clock.fast_forward(wait)
        assert failed.value.status == 401
    notice = ui.page.locator("[data-session-notice]")
    notice.wait_for(state="visible")
    assert "Your session has ended." in notice.inner_text()
    ui.expect_console_error("status of 401")
    ui.shot("session-ended-notice")


def test_a_tab_whose_clock_is_slow_refreshes_before_the_token_expires(ui, owner):
    """A time audit: the refresh was planned from the server's expiry on the tab's clock;
    on a clock ten minutes slow it came five minutes after the access token expired."""
    ui.page.clock.install(time=datetime.now(UTC) - timedelta(minutes=10))
    ui.login(owner.email, PASSWORD)
    with ui.page.expect_response(
        lambda response: "/v1/auth/refresh" in response.url, timeout=15_000
    ) as refreshed:
        # Due 5 minutes before the expiry, 23:55 after the log-in; planned on the tab's own
        # clock it came at 24:05
        ui.page.clock.fast_forward("23:56:00")
    assert refreshed.value.status == 200


def test_a_tab_that_loses_a_refresh_race_tries_again_and_stays_logged_in(ui, owner):
    """Every tab of a session plans its refresh for the same moment: one wins, and the
    others present the refresh token it rotated a moment before (401). Found by an audit:
    those tabs said "Your session has ended" while it went on. The winner's cookies are
    every tab's, so the loser tries again with them."""
    ui.page.clock.install()
    ui.login(owner.email, PASSWORD)
    stale = ui.cookie(REFRESH_COOKIE)
    # Another tab's refresh wins; this tab sends its own before the winner's answer lands.
    won = account_services.refresh(refresh_token=stale)
    with ui.page.expect_response(lambda response: "/v1/auth/refresh" in response.url) as lost:
        ui.page.clock.fast_forward("23:56:00")
    assert lost.value.status == 401
    ui.page.context.add_cookies(  # the winner's answer: its cookies are this tab's too
        [
            {"name": name, "value": value, "url": ui.base, "httpOnly": True, "sameSite": "Lax"}
            for name, value in ((ACCESS_COOKIE, won.access), (REFRESH_COOKIE, won.refresh))
        ]
    )
    with ui.page.expect_response(lambda response: "/v1/auth/refresh" in response.url) as again:
        ui.page.clock.fast_forward("00:05")

    assert again.value.status == 200
    assert ui.page.locator("[data-session-notice]").is_hidden()
    assert ui.cookie(REFRESH_COOKIE) not in (stale, won.refresh)
    assert call_api(ui.base, "/v1/me", ui.cookie(ACCESS_COOKIE))[0] == 200
    assert User.objects.get(pk=owner.pk).auth_sessions.get().ended_at is None
    ui.expect_console_error("status of 401")


def test_a_tab_left_open_after_a_logout_in_another_says_the_session_ended(ui_factory, owner):
    """Found by an audit: with the refresh cookie gone (the other tab's logout deleted it)
    the refresh answers 400, which the tab retried every minute without a word."""
    ui = ui_factory()
    ui.page.clock.install()
    ui.login(owner.email, PASSWORD)
    other = ui.page.context.new_page()
    other.goto(ui.url("/"))
    other.get_by_role("button", name="Log out").click()
    other.wait_for_url(re.compile(r".*/login/"))
    assert ui.cookie(REFRESH_COOKIE) is None

    with ui.page.expect_response(lambda response: "/v1/auth/refresh" in response.url) as failed:
        ui.page.clock.fast_forward("23:56:00")

    assert failed.value.status == 400
    ui.page.locator("[data-session-notice]").wait_for(state="visible")
    ui.expect_console_error("status of 400")


def log_out_and_in_in_another_tab(ui, email: str) -> None:
    """Another tab of the same browser logs out, then in as `email` (new cookies, a new
    CSRF token: the browser's, every tab's)."""
    other = ui.page.context.new_page()
    other.goto(ui.url("/login/"))  # drawn logged in: sent on to the home page
    other.get_by_role("button", name="Log out").click()
    other.wait_for_url(re.compile(r".*/login/"))
    other.get_by_label("Email", exact=True).fill(email)
    other.get_by_label("Password", exact=True).fill(PASSWORD)
    other.get_by_role("button", name="Log in").click()
    other.wait_for_url(ui.url("/"))


def test_a_form_drawn_before_a_login_in_another_tab_still_submits(ui_factory, owner):
    """Logging in and out gives the browser a new CSRF token; found by the review: a form
    another tab drew before (its Log out, its login form) then got 403 "Form expired", and
    the session went on. The form sends the cookie's token."""
    ui = ui_factory()
    ui.login(owner.email, PASSWORD)
    log_out_and_in_in_another_tab(ui, owner.email)

    ui.page.get_by_role("button", name="Log out").click()  # drawn two tokens ago

    ui.page.wait_for_url(re.compile(r".*/login/"))
    assert ui.cookie(REFRESH_COOKIE) is None
    assert not User.objects.get(pk=owner.pk).auth_sessions.filter(ended_at__isnull=True)


def test_overview_lists_analyses_and_shows_load_errors(ui, owner, project):
    _, key = make_key(KeyKind.SECRET, project=project, permissions=["analysis:create"])
    for title in ("Checkout 502s after deploy", "Payment webhook retries"):
        status, _, _ = call_api(
            ui.base, "/v1/analyses", key, body={"title": title, "input": "log lines"}
        )
        assert status == 201
    ui.login(owner.email, PASSWORD)
    ui.goto(f"/projects/{project.id}/")
    rows = ui.page.locator("[data-analyses-body] tr")
    rows.first.wait_for()
    assert rows.count() == 2
    assert "Payment webhook retries" in rows.first.inner_text()  # newest first
    assert "queued" in rows.first.inner_text()
    assert keyformat.display_prefix(key) in rows.first.inner_text()
    # The time's tooltip is the UTC time as the server writes them, not the raw ISO text
    newest = Analysis.objects.filter(project=project).latest("created_at").created_at
    assert rows.first.locator("time").get_attribute("title") == utc_text(newest)
    # and as text, for screen readers (a review: a tooltip only, unlike the server's pages)
    hidden = rows.first.locator("time .visually-hidden")
    assert hidden.text_content() == f" ({utc_text(newest)})"
    machine = rows.first.locator("time").get_attribute("datetime")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", machine), machine
    ui.shot("project-overview-analyses")

    ui.page.route(
        "**/v1/analyses*",
        lambda route: route.fulfill(
            status=503,
            content_type="application/json",
            body='{"error": {"code": "SERVICE_UNAVAILABLE", "message": "Try again shortly."}}',
        ),
    )
    ui.page.get_by_role("button", name="Refresh").click()
    error = ui.page.locator('[data-state="error"]')
    error.wait_for(state="visible")
    assert "Try again shortly." in error.inner_text()
    ui.expect_console_error("status of 503")
    ui.shot("project-overview-error")


def test_tabs_due_together_refresh_once_and_log_no_error(ui, owner):
    """Found by a multi-tab audit: every tab refreshed at the same moment, the losers got
    401 (an error in the console each) and tried again. They take turns now, and a tab
    whose turn comes just after another's refresh takes it as its own."""
    ui.page.clock.install()
    ui.login(owner.email, PASSWORD)
    tabs = [ui.page] + [ui.page.context.new_page() for _ in range(3)]
    for tab in tabs[1:]:
        tab.goto(ui.url("/"))
    refreshes = []
    ui.page.context.on(
        "response", lambda r: refreshes.append(r.status) if "/v1/auth/refresh" in r.url else None
    )

    ui.page.clock.fast_forward("23:56:00")
    tabs[0].wait_for_timeout(1500)

    assert refreshes == [200]
    assert User.objects.get(pk=owner.pk).auth_sessions.get().ended_at is None
    for tab in tabs:
        assert tab.locator("[data-session-notice]").is_hidden()


def test_a_tab_seen_again_after_sleeping_refreshes_at_once(ui, owner):
    """A timer does not run while the computer sleeps: found by a multi-tab audit, a page
    woken a day later planned nothing and its next API call said the session had ended."""
    ui.page.clock.install()
    ui.login(owner.email, PASSWORD)
    # The wall clock moves on; the tab's timers did not run (its planned refresh is not due).
    ui.page.clock.set_system_time(datetime.now(UTC) + timedelta(hours=23, minutes=57))

    with ui.page.expect_response(lambda response: "/v1/auth/refresh" in response.url) as woke:
        ui.page.evaluate("window.dispatchEvent(new Event('focus'))")

    assert woke.value.status == 200


def test_the_overview_refreshes_the_session_once_when_its_api_call_is_refused(ui, owner, project):
    """A multi-tab audit: after a sleep, the analyses said "Your session has ended" while
    a refresh (and a reload) would have gone on."""
    ui.login(owner.email, PASSWORD)
    ui.goto(f"/projects/{project.id}/")
    ui.page.get_by_text("No analyses yet").wait_for()
    ui.page.context.clear_cookies(name=ACCESS_COOKIE)  # expired while the tab slept

    with ui.page.expect_response(lambda response: "/v1/auth/refresh" in response.url) as renewed:
        ui.page.get_by_role("button", name="Refresh").click()

    assert renewed.value.status == 200
    ui.page.get_by_text("No analyses yet").wait_for()
    assert ui.page.locator('[data-state="error"]').is_hidden()
    ui.expect_console_error("status of 401")  # the refused call itself


def test_a_page_drawn_before_another_account_logged_in_acts_as_nobody(
    ui_factory, owner, admin, project
):
    """A multi-tab audit: another window logged in as an admin, and this tab's Revoke
    revoked the key as that admin, from a page that named the owner."""
    api_key, _ = make_key(KeyKind.SECRET, project=project, name="Deploy bot")
    ui = ui_factory()
    ui.login(owner.email, PASSWORD)
    ui.goto(f"/projects/{project.id}/api-keys/")
    log_out_and_in_in_another_tab(ui, admin.email)

    ui.page.get_by_role("button", name="Revoke Deploy bot").click()
    ui.page.locator("dialog[data-confirm-dialog]").get_by_role("button", name="Revoke key").click()

    ui.page.get_by_role("heading", name="This browser is logged in as someone else now").wait_for()
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at is None
    ui.expect_console_error("status of 409")  # the error page's own status
    ui.shot("account-changed")


def test_a_tab_at_the_sessions_cap_never_refreshes_for_nothing(ui, owner):
    """A review: at the 30-day cap nothing can be extended, yet every focus rotated the
    refresh token (a database write each). The notice comes when the session ends."""
    ui.page.clock.install()
    ui.login(owner.email, PASSWORD)
    owner.auth_sessions.update(expires_at=timezone.now() + timedelta(minutes=4))
    ui.page.context.clear_cookies(name=ACCESS_COOKIE)
    refreshes = []
    ui.page.on("request", lambda r: refreshes.append(r) if "/v1/auth/refresh" in r.url else None)
    ui.goto("/")  # the page rotates the pair: its expiry is the session's cap now

    for _ in range(3):
        ui.page.clock.fast_forward("00:31")
        ui.page.evaluate("window.dispatchEvent(new Event('focus'))")
    ui.page.clock.fast_forward("04:00")

    assert refreshes == []
    ui.page.locator("[data-session-notice]").wait_for(state="visible")


def test_a_refresh_without_an_answer_does_not_hold_the_other_tabs(ui, owner):
    """A review: on a stalled network one tab's refresh held the turn (a Web Lock) and
    every other tab's refresh waited for good. A refresh waits 15 s for its answer."""
    ui.page.clock.install()
    ui.login(owner.email, PASSWORD)
    stalled = ui.page
    stalled.route("**/v1/auth/refresh", lambda route: None)  # never answered
    other = ui.page.context.new_page()
    other.goto(ui.url("/"))

    # Neither tab's promise is awaited here (evaluate would, in real time): the stalled one's
    # POST is out, its 15 s give-up set, and the other tab waits for its turn when the clock
    # jumps past the 15 s.
    with stalled.expect_request("**/v1/auth/refresh"):
        stalled.evaluate("() => { window.sigsentrySession.refresh(); }")
    other.evaluate(
        "() => { window.sigsentrySession.refresh().then(alive => { window.alive = alive; }); }"
    )
    ui.page.clock.fast_forward("00:16")

    # The stalled tab gave up, healed its cookies by asking for its page, and the other
    # tab took that as its own refresh: the session goes on, nobody waits any more.
    # Polled from here: once it has to poll, wait_for_function evaluates a string, which the
    # page's CSP refuses (no 'unsafe-eval').
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while other.evaluate("window.alive") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert other.evaluate("window.alive") is True
    assert User.objects.get(pk=owner.pk).auth_sessions.get().ended_at is None


def test_a_refresh_whose_answer_was_lost_is_healed_within_the_race_window(ui, owner):
    """A multi-tab audit: the server rotated the pair, the answer never reached the tab
    (a reset connection), and the tab's retry a minute later presented the old token: the
    session ended as stolen. The tab asks for its page at once, which brings the session's
    current cookies (the dashboard's rejoin within 10 s)."""
    ui.page.clock.install()
    ui.login(owner.email, PASSWORD)
    lost = []

    def answer_lost(route):
        route.fetch()  # the server rotates the pair
        lost.append(route.request.url)
        route.abort("connectionreset")  # and the tab never hears of it

    ui.page.route("**/v1/auth/refresh", answer_lost)
    with ui.page.expect_response(lambda r: r.request.method == "HEAD") as healed:
        ui.page.clock.fast_forward("23:56:00")
    assert lost and healed.value.status == 200
    ui.page.unroute("**/v1/auth/refresh")

    with ui.page.expect_response(lambda r: "/v1/auth/refresh" in r.url) as next_refresh:
        ui.page.clock.fast_forward("24:00:00")

    assert next_refresh.value.status == 200
    assert User.objects.get(pk=owner.pk).auth_sessions.get().ended_at is None
    ui.expect_console_error("ERR_CONNECTION_RESET")
