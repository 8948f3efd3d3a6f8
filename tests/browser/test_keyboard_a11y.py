"""Keyboard and screen reader use in Chromium: where the focus lands after a refused row
action, a redirect with a message, a form error or a new secret; focus rings that survive
Windows high contrast; the sticky top bar; a chart's numbers as text."""

from __future__ import annotations

import pyotp
import pytest
from playwright.sync_api import expect

from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from apps.apikeys.services import roll_key
from tests.browser.conftest import SCREENSHOTS, Ui, contrast_ratio, live_regions_heard
from tests.factories import PASSWORD, make_key

pytestmark = pytest.mark.browser

#: What has the focus: its tag, id, value, aria-invalid, and the texts its
#: aria-describedby names; whether a modal dialog is open and holds it.
FOCUS = """() => {
  const a = document.activeElement;
  const ids = (a.getAttribute("aria-describedby") || "").split(" ").filter(Boolean);
  const dialog = a.closest("dialog");
  return {
    tag: a.tagName, id: a.id, value: a.value, invalid: a.getAttribute("aria-invalid"),
    described: ids.map((id) => {
      const e = document.getElementById(id);
      return e ? e.textContent : null;
    }),
    inModal: !!dialog && dialog.matches(":modal"),
    classes: a.className,
  };
}"""


def logged_in_ui(ui_factory, owner, width=1280):
    ui = ui_factory(viewport={"width": width, "height": 900})
    ui.login(owner.email, PASSWORD)
    return ui


def test_a_refused_roll_reopens_its_dialog_with_the_focus_on_the_field(ui_factory, owner, project):
    key, _ = make_key(KeyKind.SECRET, project=project, name="Payments CI")
    ui = logged_in_ui(ui_factory, owner)
    page = ui.page
    ui.goto(f"/projects/{project.id}/api-keys/")

    page.get_by_role("button", name=f"Roll Payments CI ({key.prefix})").focus()
    page.keyboard.press("Enter")
    dialog = page.locator(f"dialog#roll-{key.id}")
    dialog.wait_for(state="visible")
    dialog.get_by_label("24 hours").check()
    dialog.get_by_label("New key expires (UTC)").fill("2020-01-01T10:00")
    dialog.get_by_role("button", name="Roll key").click()
    page.wait_for_load_state()
    dialog.wait_for(state="visible")

    focus = page.evaluate(FOCUS)
    assert focus["id"] == f"roll-expiry-{key.id}", focus
    assert focus["inModal"] and focus["invalid"] == "true"
    assert focus["value"] == "2020-01-01T10:00", "the expiry as typed"
    assert any(text and "future" in text for text in focus["described"]), focus
    assert dialog.get_by_label("24 hours").is_checked(), "the grace as chosen"
    ui.shot("a11y-roll-error")
    assert not ApiKey.objects.filter(replaces=key).exists()

    # Escape: the focus goes back to the row's Roll button (the dialog was opened by the
    # page, so the browser had no opener to return to: found by the keyboard audit).
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    expect(page.locator(f'[data-dialog-open="roll-{key.id}"]')).to_be_focused()
    page.get_by_role("button", name=f"Roll Payments CI ({key.prefix})").click()
    dialog.wait_for(state="visible")

    # Fixed in place, it rolls.
    dialog.get_by_label("New key expires (UTC)").fill("2099-01-01T10:00")
    dialog.get_by_role("button", name="Roll key").click()
    page.locator("dialog[data-secret-dialog]").wait_for(state="visible")
    assert ApiKey.objects.filter(replaces=key).exists()


def test_refused_origins_reopen_their_dialog_with_the_text_as_typed(ui_factory, owner, project):
    key, _ = make_key(KeyKind.PUBLIC, project=project, name="Storefront")
    ui = logged_in_ui(ui_factory, owner, width=390)
    page = ui.page
    ui.goto(f"/projects/{project.id}/sdk-keys/")

    page.get_by_role("button", name=f"Allowed origins of Storefront ({key.prefix})").click()
    dialog = page.locator(f"dialog#origins-dialog-{key.id}")
    dialog.get_by_label("Allowed origins").fill("https://shop.example.com\nftp://bad")
    dialog.get_by_role("button", name="Save origins").click()
    page.wait_for_load_state()
    dialog.wait_for(state="visible")

    focus = page.evaluate(FOCUS)
    assert focus["id"] == f"origins-{key.id}" and focus["inModal"], focus
    assert focus["value"] == "https://shop.example.com\nftp://bad"
    assert focus["invalid"] == "true"
    assert any(text and "ftp://bad" in text for text in focus["described"]), focus
    ui.shot("a11y-origins-error-narrow")


def test_the_recovery_codes_dialog_starts_on_copy_and_copied_is_announced(ui_factory, owner):
    ui = logged_in_ui(ui_factory, owner)
    page = ui.page
    ui.goto("/account/")
    page.get_by_role("button", name="Set up two-factor authentication").click()
    secret = page.locator("[data-totp-secret]").inner_text().replace(" ", "")
    page.get_by_label("Code from the app", exact=True).fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Turn on").click()
    dialog = page.locator("dialog[data-secret-dialog]")
    dialog.wait_for(state="visible")
    page.wait_for_load_state("load")
    page.wait_for_timeout(300)  # past any scroll to a fragment that would take the focus

    focus = page.evaluate(FOCUS)
    assert focus["tag"] == "BUTTON" and focus["inModal"], focus
    assert page.evaluate("document.activeElement.textContent.trim()") == "Copy"

    # Escape asks, in the dialog (role=alertdialog, read out), on its safe answer; that
    # answer leads back to Copy.
    page.keyboard.press("Escape")
    question = dialog.get_by_role("alertdialog", name="Close without saving them?")
    expect(question).to_contain_text("You will not see these recovery codes again.")
    expect(question.get_by_role("button", name="Keep it open")).to_be_focused()
    page.keyboard.press("Enter")
    expect(question).to_be_hidden()
    expect(dialog.get_by_role("button", name="Copy", exact=True)).to_be_focused()

    page.keyboard.press("Enter")
    live = dialog.locator("[data-live-region]")
    expect(live).to_have_text("Copied")  # said by a polite live region, not only shown
    assert live.get_attribute("aria-live") == "polite"
    # In the dialog, so in the accessibility tree: one in <body> was left out of it while the
    # modal dialog was open, and never said (an accessibility audit).
    assert ("status", "Copied") in live_regions_heard(page)


def test_after_a_revoke_the_focus_is_on_the_message(ui_factory, owner, project):
    key, _ = make_key(KeyKind.SECRET, project=project, name="Payments CI")
    ui = logged_in_ui(ui_factory, owner)
    page = ui.page
    ui.goto(f"/projects/{project.id}/api-keys/")

    # By keyboard: the dialog opens on its safe answer; Tab reaches the one that acts.
    page.get_by_role("button", name=f"Revoke Payments CI ({key.prefix})").focus()
    page.keyboard.press("Enter")
    confirm = page.locator("dialog[data-confirm-dialog]")
    expect(confirm.get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Tab")
    expect(confirm.get_by_role("button", name="Revoke key")).to_be_focused()
    page.keyboard.press("Enter")
    page.get_by_text("Revoked “Payments CI”").wait_for()

    assert page.evaluate("document.activeElement.classList.contains('flash-stack')")
    assert page.evaluate("document.activeElement.textContent").strip().startswith("Revoked")
    # Tab goes on from there, not from the top of the page's <body>.
    page.keyboard.press("Tab")
    assert page.evaluate("!document.querySelector('.flash-stack').contains(document.activeElement)")


def test_a_row_action_refused_for_the_key_itself_focuses_the_message_on_its_row(
    ui_factory, owner, project
):
    """Rolled meanwhile (in another tab): no Roll dialog is left; the row says why."""
    key, _ = make_key(KeyKind.SECRET, project=project, name="Payments CI")
    ui = logged_in_ui(ui_factory, owner)
    page = ui.page
    ui.goto(f"/projects/{project.id}/api-keys/")
    roll_key(actor=owner, api_key=key, grace_seconds=3600)

    page.get_by_role("button", name=f"Roll Payments CI ({key.prefix})").click()
    page.locator(f"dialog#roll-{key.id}").get_by_role("button", name="Roll key").click()
    page.wait_for_load_state()
    alert = page.locator(f'tr[data-key-id="{key.id}"] .field-error[role=alert]')
    alert.wait_for()

    assert page.evaluate("document.activeElement.getAttribute('role')") == "alert"
    assert "already has a successor" in page.evaluate("document.activeElement.textContent")


def test_a_page_without_a_message_keeps_the_focus_where_it_was(ui_factory, owner, project):
    ui = logged_in_ui(ui_factory, owner)
    ui.goto(f"/projects/{project.id}/api-keys/")
    assert ui.page.evaluate("document.activeElement === document.body")


def test_form_errors_take_the_focus_new_project_and_lifetime_policy(
    ui_factory, owner, organization
):
    ui = logged_in_ui(ui_factory, owner)
    page = ui.page
    ui.goto("/")
    page.get_by_label("Project name").fill("   ")  # passes `required`; blank to the server
    page.get_by_role("button", name="Create project").click()
    page.wait_for_load_state()
    page.locator(".field-error").first.wait_for()
    focus = page.evaluate(FOCUS)
    assert focus["id"] == f"project-name-{organization.id}" and focus["invalid"] == "true"
    assert focus["described"] and all(focus["described"]), focus

    ui.goto(f"/orgs/{organization.id}/api-keys/")
    page.get_by_label("Maximum key lifetime (days)").fill("0")
    page.get_by_role("button", name="Save policy").click()
    page.wait_for_load_state()
    page.locator("[data-key-policy] .field-error").wait_for()
    focus = page.evaluate(FOCUS)
    assert focus["invalid"] == "true" and focus["value"] == "0", focus
    assert focus["described"][0].startswith("1 to 3650 days")
    assert "greater than or equal to 1" in focus["described"][1]


def _style(page, prop: str) -> str:
    return page.evaluate(f"getComputedStyle(document.activeElement).{prop}")


@pytest.mark.parametrize("forced", ["none", "active"])
def test_focus_rings_show_in_forced_colors_and_boxes_get_a_solid_ring(
    browser, live_url, owner, project, forced
):
    """Windows high contrast drops box-shadows: a transparent outline is what it draws."""
    context = browser.new_context(
        base_url=live_url, viewport={"width": 1280, "height": 900}, forced_colors=forced
    )
    try:
        page = context.new_page()
        Ui(page, live_url).login(owner.email, PASSWORD)
        page.goto(f"/projects/{project.id}/api-keys/")
        page.keyboard.press("Tab")  # keyboard use: focus() then shows :focus-visible

        rings = {}
        for name, locator in (
            ("button", page.get_by_role("button", name="Create key")),
            ("checkbox", page.get_by_label("analysis:read", exact=True)),
            ("text", page.get_by_label("Name", exact=True)),
        ):
            locator.focus()
            rings[name] = (
                _style(page, "outlineStyle"),
                _style(page, "outlineWidth"),
                _style(page, "outlineColor"),
            )
        for name, (style, width, color) in rings.items():
            assert (style, width) == ("solid", "2px"), (name, rings)
            if forced == "active":
                assert color != "rgba(0, 0, 0, 0)", (name, rings)
        if forced == "none":
            assert rings["checkbox"][2] == "rgb(91, 79, 224)", rings
            assert rings["button"][2] == "rgba(0, 0, 0, 0)", "the ring is the box-shadow"
            # a text box's edge is how it is found: 3:1 on white (WCAG 1.4.11, an audit)
            edge = page.locator("input[name=expires_at]").first.evaluate(
                "e => getComputedStyle(e).borderTopColor"
            )
            assert contrast_ratio(edge, "rgb(255, 255, 255)") >= 3, edge
    finally:
        context.close()


def test_scrolled_into_view_below_the_sticky_top_bar(ui_factory, owner):
    wide = logged_in_ui(ui_factory, owner, width=1280)
    assert wide.page.evaluate("getComputedStyle(document.documentElement).scrollPaddingTop") == (
        "72px"
    )
    assert wide.page.evaluate("getComputedStyle(document.querySelector('.topbar')).position") == (
        "sticky"
    )
    narrow = logged_in_ui(ui_factory, owner, width=390)
    assert narrow.page.evaluate("getComputedStyle(document.querySelector('.topbar')).position") == (
        "static"
    )
    assert narrow.page.evaluate("getComputedStyle(document.documentElement).scrollPaddingTop") in (
        "auto",
        "0px",
    )


def test_a_usage_chart_has_its_numbers_as_text(ui_factory, owner, project):
    key, _ = make_key(KeyKind.SECRET, project=project, name="Payments CI")
    ui = logged_in_ui(ui_factory, owner)
    page = ui.page
    ui.goto(f"/projects/{project.id}/api-keys/{key.id}/")

    assert "Hover" not in page.inner_text("main")
    summaries = page.locator("details.chart-numbers > summary")
    assert summaries.count() == 2
    summaries.first.focus()
    page.keyboard.press("Enter")
    items = page.locator("details.chart-numbers").first.locator("li")
    assert items.count() == 48
    assert items.first.is_visible()
    assert "request" in items.last.inner_text()
    bar = page.evaluate(
        "getComputedStyle(document.documentElement).getPropertyValue('--bar-current').trim()"
    )
    assert bar == "#7c70f0"
    ui.shot("a11y-usage-numbers")


def test_each_sessions_log_out_button_names_its_session(ui_factory, owner):
    laptop = logged_in_ui(ui_factory, owner)
    logged_in_ui(ui_factory, owner, width=390)
    logged_in_ui(ui_factory, owner, width=390)  # the same device, IP and minute as the last
    laptop.goto("/account/")

    buttons = laptop.page.locator("tr[data-session] button")
    labels = [buttons.nth(i).get_attribute("aria-label") for i in range(buttons.count())]
    assert len(labels) == 3
    this, *others = sorted(labels, key=lambda label: "(this browser)" not in label)
    assert this.endswith("(this browser)")
    for other in others:
        assert "IP 127.0.0.1" in other and "last seen" in other, other
    assert len(set(labels)) == 3, labels  # each button names its own row


def test_a_date_time_field_keeps_its_ring_while_its_calendar_button_has_the_focus(
    ui_factory, owner, project
):
    """An accessibility audit (WCAG 2.4.7): Tab reaches the field's calendar button, inside
    the field; the field then matches :focus-within but not :focus, and its ring went."""
    ui = logged_in_ui(ui_factory, owner)
    page = ui.page
    ui.goto(f"/projects/{project.id}/api-keys/")
    field = page.locator("input[name=expires_at]").first
    page.get_by_label("Name", exact=True).focus()
    on_button = "e => document.activeElement === e && !e.matches(':focus')"
    for _ in range(12):  # its date and time parts, then the button
        page.keyboard.press("Tab")
        if field.evaluate(on_button):
            break
    assert field.evaluate(on_button), "Tab never reached the calendar button"

    page.wait_for_timeout(300)  # past the ring's 0.12 s transition
    assert _style(page, "boxShadow") == "rgba(91, 79, 224, 0.35) 0px 0px 0px 3px"
    assert _style(page, "borderTopColor") == "rgb(91, 79, 224)"
    box = field.bounding_box()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(
        path=str(SCREENSHOTS / "a11y-datetime-calendar-button-focus.png"),
        clip={"x": box["x"] - 8, "y": box["y"] - 8, "width": box["width"] + 16, "height": 54},
    )
