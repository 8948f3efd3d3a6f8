"""What a screen reader is told, read from Chromium's accessibility tree (not the DOM): a
Copy inside a secret's modal dialog, the session's end over an open dialog, a flash on the
login page, the overview's analyses loaded again (an accessibility audit, WCAG 4.1.3 and
2.4.3)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from apps.accounts.cookies import REFRESH_COOKIE
from tests.browser.conftest import live_regions_heard
from tests.factories import PASSWORD, make_analysis

pytestmark = pytest.mark.browser

#: A browser where copying fails both ways (the Clipboard API refused, execCommand too):
#: the Copy button asks for Ctrl+C.
CLIPBOARD_REFUSED = """
navigator.clipboard.writeText = () => Promise.reject(new DOMException("denied", "NotAllowedError"));
document.execCommand = () => false;
"""


def heard(page, text: str, role: str = "status") -> bool:
    return any(r == role and text in " ".join(t.split()) for r, t in live_regions_heard(page))


def wait_heard(page, text: str, role: str = "status") -> None:
    """Waits for `text` in a kept live region (a region's text is written 100 ms late)."""
    for _ in range(30):
        if heard(page, text, role):
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"{text!r} is in no live region kept: {live_regions_heard(page)}")


def mint_key(ui, project, name: str):
    ui.goto(f"/projects/{project.id}/api-keys/")
    ui.page.get_by_label("Name", exact=True).fill(name)
    ui.page.get_by_label("analysis:read", exact=True).check()
    ui.page.get_by_role("button", name="Create key").click()
    dialog = ui.page.locator("dialog[data-secret-dialog]")
    dialog.wait_for(state="visible")
    assert dialog.evaluate("dialog => dialog.matches(':modal')")
    return dialog


def test_copy_in_a_new_keys_dialog_is_said_and_so_is_press_ctrl_c(ui, owner, project):
    """Found by the audit: the region was appended to <body>, outside the modal dialog,
    and Chromium leaves that out of the tree while the dialog is open."""
    ui.login(owner.email, PASSWORD)
    dialog = mint_key(ui, project, "Payments CI")
    dialog.get_by_role("button", name="Copy", exact=True).click()
    wait_heard(ui.page, "Copied")
    expect(dialog.locator("[data-live-region]")).to_have_text("Copied")
    ui.shot("a11y-copied-in-dialog")

    ui.page.add_init_script(CLIPBOARD_REFUSED)
    dialog = mint_key(ui, project, "Billing CI")
    dialog.get_by_role("button", name="Copy", exact=True).click()
    wait_heard(ui.page, "Press Ctrl+C")
    expect(dialog.locator("[data-live-region]")).to_have_text("Press Ctrl+C")


def test_copy_in_the_webhook_secret_dialog_is_said(ui, owner, organization):
    ui.login(owner.email, PASSWORD)
    ui.goto(f"/orgs/{organization.id}/webhooks/")
    ui.page.get_by_label("Endpoint URL").fill("https://8.8.8.8/hooks/sigsentry")
    ui.page.get_by_role("button", name="Add webhook").click()
    dialog = ui.page.locator("dialog[data-secret-dialog]")
    dialog.wait_for(state="visible")
    dialog.get_by_role("button", name="Copy", exact=True).click()
    wait_heard(ui.page, "Copied")


def test_the_session_ending_under_an_open_dialog_is_said_in_it(ui, owner, project):
    """Found by the audit: the notice's role=alert sat outside the modal dialog, ignored."""
    ui.login(owner.email, PASSWORD)
    dialog = mint_key(ui, project, "Payments CI")
    ui.page.context.clear_cookies(name=REFRESH_COOKIE)  # a logout in another tab

    with ui.page.expect_response(lambda r: "/v1/auth/refresh" in r.url) as ended:
        ui.page.evaluate("window.sigsentrySession.refresh()")

    assert ended.value.status == 400
    ui.expect_console_error("status of 400")
    wait_heard(ui.page, "Your session has ended.", role="alert")
    notice = dialog.get_by_role("alert")
    expect(notice).to_contain_text("Your session has ended.")
    # Its link works from inside the dialog (the page's own is behind it, inert).
    expect(notice.get_by_role("link", name="Log in again")).to_be_visible()
    ui.shot("a11y-session-ended-in-dialog")


IN_FLASH = "!!document.activeElement.closest('.flash-stack')"


def test_a_message_on_the_login_page_takes_the_focus_from_the_email_field(ui, owner):
    """Found by the audit: after a reset request or a logout the login page's flash (a
    status present from load, which a screen reader does not read by itself) sat above the
    email field, which took the focus by autofocus: the message was never said."""
    page = ui.page
    ui.goto("/reset/")
    page.get_by_label("Email", exact=True).fill(owner.email)
    page.get_by_role("button", name="Send reset link").click()
    page.wait_for_url(ui.url("/login/"))
    page.get_by_text("If an account uses this email").wait_for()
    assert page.evaluate(IN_FLASH), focused(page)

    ui.login(owner.email, PASSWORD)
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(ui.url("/login/"))
    page.get_by_text("You have been logged out.").wait_for()
    assert page.evaluate(IN_FLASH), focused(page)
    ui.shot("a11y-login-flash-focused")

    # Without a message the email field has the focus, as before.
    ui.goto("/login/")
    assert page.evaluate("document.activeElement.type") == "email"


def focused(page) -> str:
    return page.evaluate(
        "(() => { const a = document.activeElement;"
        " return a.tagName + ' ' + (a.textContent || '').trim(); })()"
    )


def test_try_again_keeps_the_focus_on_the_page(ui, owner, project):
    """Found by the audit: Try again hid its own block (the loading state), and the focus
    fell to <body>."""
    ui.login(owner.email, PASSWORD)
    page = ui.page
    page.route(
        "**/v1/analyses?*",
        lambda route: route.fulfill(status=500, json={"error": {"message": "Try again."}}),
    )
    ui.goto(f"/projects/{project.id}/")
    try_again = page.get_by_role("button", name="Try again")
    try_again.focus()
    page.keyboard.press("Enter")
    page.get_by_role("alert").filter(has_text="could not be loaded").wait_for()

    assert focused(page) == "BUTTON Refresh", "not <body>: Tab goes on from where it was"
    ui.expect_console_error("status of 500")

    page.unroute("**/v1/analyses?*")
    page.keyboard.press("Enter")  # Refresh, which kept the focus
    page.get_by_text("No analyses yet").wait_for()
    assert focused(page) == "BUTTON Refresh"


def test_a_refresh_says_what_it_found(ui, owner, project):
    """Found by the audit: the result was said nowhere (the section is aria-busy while it
    loads, which silences its own status)."""
    ui.login(owner.email, PASSWORD)
    page = ui.page
    ui.goto(f"/projects/{project.id}/")
    page.get_by_text("No analyses yet").wait_for()
    page.get_by_role("button", name="Refresh").click()
    wait_heard(page, "No analyses in this project yet")

    for title in ("Checkout 502s after deploy", "Slow cart queries", "Login loop"):
        make_analysis(project, author=owner, title=title, input="logs")
    page.get_by_role("button", name="Refresh").click()
    page.get_by_text("Login loop").wait_for()
    wait_heard(page, "3 analyses loaded")
    ui.shot("a11y-overview-reloaded")


def test_the_overviews_first_load_says_nothing_of_its_own(ui, owner, project):
    """A page's own load is read with the page: only a reload someone asked for is said."""
    ui.login(owner.email, PASSWORD)
    ui.goto(f"/projects/{project.id}/")
    ui.page.get_by_text("No analyses yet").wait_for()
    assert ui.page.locator("[data-analyses-status]").text_content() == ""
