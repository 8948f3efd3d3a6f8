"""What a screen reader is told, read from Chromium's accessibility tree (not the DOM): a
Copy inside a secret's modal dialog, the session's end over an open dialog, a flash on the
login page, the overview's analyses loaded again (an accessibility audit, WCAG 4.1.3 and
2.4.3)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from apps.accounts.cookies import REFRESH_COOKIE
from tests.browser.conftest import live_regions_heard
from tests.factories import PASSWORD

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
