"""Confirmations, shown-once dialogs, field errors and keyboard use in Chromium, with
JavaScript and without (SPEC §5: destructive actions are confirmed before they act)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from apps.invitations.models import Invitation
from apps.invitations.services import invite_member
from apps.orgs.models import Membership
from core.confirm import CONFIRM_FIELD, CONFIRM_VALUE
from tests.browser.conftest import contrast_ratio
from tests.factories import PASSWORD, make_key

pytestmark = pytest.mark.browser


def keys_path(project) -> str:
    return f"/projects/{project.id}/api-keys/"


def focused_id(page) -> str:
    return page.evaluate("document.activeElement && document.activeElement.id")


def test_without_javascript_revoke_asks_on_a_page_and_only_the_confirmed_post_revokes(
    ui_factory, owner, project
):
    api_key, _ = make_key(KeyKind.SECRET, project=project, name="Nightly export", actor=owner)
    ui = ui_factory(javascript=False)
    page = ui.page
    ui.login(owner.email, PASSWORD)
    ui.goto(keys_path(project))

    page.get_by_role("button", name="Revoke Nightly export").click()
    page.wait_for_url(ui.url(f"{keys_path(project)}{api_key.id}/revoke/"))
    heading = page.get_by_role("heading", level=1).inner_text()
    assert heading == f"Revoke “\u2068Nightly export\u2069” ({api_key.prefix}…)?"
    assert "This cannot be undone." in page.inner_text("main")
    ui.shot("revoke-confirmation-no-js")
    api_key.refresh_from_db()
    assert api_key.revoked_at is None, "the first POST only asks"

    page.get_by_role("link", name="Cancel").click()
    page.wait_for_url(ui.url(f"{keys_path(project)}?page=1#keys"))
    api_key.refresh_from_db()
    assert api_key.revoked_at is None

    page.get_by_role("button", name="Revoke Nightly export").click()
    page.get_by_role("button", name="Revoke key").click()
    page.wait_for_url(ui.url(keys_path(project)))
    assert "It stopped working." in page.inner_text("main")
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None and api_key.revoked_by == owner


def confirm_dialog(page):
    """The page's own confirmation dialog (templates/includes/confirm_dialog.html)."""
    return page.locator("dialog[data-confirm-dialog]")


def test_with_javascript_revoke_asks_in_the_page_dialog_and_sends_one_request(ui, owner, project):
    """Not window.confirm(): a browser told to stop the page's dialogs answers it "no"
    unseen, and Revoke silently did nothing."""
    api_key, _ = make_key(KeyKind.SECRET, project=project, name="Nightly export", actor=owner)
    page = ui.page
    ui.login(owner.email, PASSWORD)
    ui.goto(keys_path(project))
    native, posts = [], []
    page.on("dialog", lambda d: (native.append(d.message), d.dismiss()))
    page.on("request", lambda r: posts.append((r.url, r.post_data)) if r.method == "POST" else None)
    revoke = page.get_by_role("button", name="Revoke Nightly export")
    dialog = confirm_dialog(page)

    revoke.click()
    dialog.wait_for(state="visible")
    assert page.evaluate("document.querySelector('dialog[data-confirm-dialog]').matches(':modal')")
    assert dialog.get_by_role("heading").inner_text() == (
        f"Revoke “\u2068Nightly export\u2069” ({api_key.prefix}…)?"
    )
    assert "This cannot be undone." in dialog.inner_text()
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    ui.shot("revoke-dialog")

    # Cancel: nothing is sent, the key stays active, the focus is back on Revoke.
    dialog.get_by_role("button", name="Cancel").click()
    dialog.wait_for(state="hidden")
    expect(revoke).to_be_focused()
    # Escape cancels too.
    revoke.click()
    dialog.wait_for(state="visible")
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    expect(revoke).to_be_focused()
    page.wait_for_timeout(300)
    assert posts == []
    api_key.refresh_from_db()
    assert api_key.revoked_at is None

    # Confirm: one request, with the marker, and the key is revoked.
    revoke.click()
    dialog.get_by_role("button", name="Revoke key").click()
    page.get_by_text("It stopped working.").wait_for()
    [(url, sent)] = posts  # the dialog is the confirmation: no page in between
    assert url == ui.url(f"{keys_path(project)}{api_key.id}/revoke/")
    assert f"{CONFIRM_FIELD}={CONFIRM_VALUE}" in sent.split("&")
    assert page.url == ui.url(keys_path(project))
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None and api_key.revoked_by == owner
    assert native == [], "no native dialog: a browser may refuse to show those"


def mint(ui, project, name: str):
    page = ui.page
    ui.goto(keys_path(project))
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("analysis:read", exact=True).check()
    page.get_by_role("button", name="Create key").click()
    dialog = page.locator("dialog[data-secret-dialog]")
    dialog.wait_for(state="visible")
    return dialog, dialog.locator("code[data-secret]").inner_text().strip()


#: An element's text colour and the background it is drawn on (its own, or its nearest
#: ancestor's that is not transparent).
COLOURS = """(e) => {
  let b = e;
  while (getComputedStyle(b).backgroundColor === "rgba(0, 0, 0, 0)") b = b.parentElement;
  return [getComputedStyle(e).color, getComputedStyle(b).backgroundColor];
}"""


def close_question(dialog):
    """What the new key's dialog asks before it closes uncopied, inside that dialog
    (templates/includes/secret_close_confirm.html)."""
    return dialog.get_by_role("alertdialog", name="Close without copying?")


def test_escape_on_the_new_key_dialog_asks_in_it_before_the_key_is_lost(ui, owner, project):
    """Not window.confirm(): a browser told to stop the page's dialogs answers it "no"
    unseen, and the dialog could not be closed by Escape at all."""
    page = ui.page
    ui.login(owner.email, PASSWORD)
    native = []
    page.on("dialog", lambda d: (native.append(d.message), d.dismiss()))
    dialog, key = mint(ui, project, "Escape hatch")
    question = close_question(dialog)
    copy = dialog.get_by_role("button", name="Copy", exact=True)
    expect(copy).to_be_focused()

    # Escape asks, in the dialog, the key still in view; the safe answer has the focus.
    page.keyboard.press("Escape")
    expect(question).to_be_visible()
    assert question.get_attribute("aria-describedby") == "secret-close-detail"
    assert question.locator("#secret-close-detail").inner_text() == (
        "You will not see this key again."
    )
    expect(question.get_by_role("button", name="Keep it open")).to_be_focused()
    expect(dialog.get_by_role("button", name="I have copied it")).to_be_hidden()
    assert page.evaluate("document.querySelector('dialog[data-secret-dialog]').matches(':modal')")
    assert dialog.locator("code[data-secret]").inner_text().strip() == key
    ui.shot("new-key-dialog-asks-1280")

    # Escape on the question: back to the key (not closed), the focus on Copy.
    page.keyboard.press("Escape")
    expect(question).to_be_hidden()
    expect(copy).to_be_focused()
    expect(dialog.get_by_role("button", name="I have copied it")).to_be_visible()
    assert dialog.locator("code[data-secret]").inner_text().strip() == key

    # "Keep it open", by keyboard: the same.
    page.keyboard.press("Escape")
    expect(question.get_by_role("button", name="Keep it open")).to_be_focused()
    page.keyboard.press("Enter")
    expect(question).to_be_hidden()
    expect(copy).to_be_focused()
    assert dialog.is_visible()

    # "Close without copying", reached by Tab: closed, the key gone from the page.
    page.keyboard.press("Escape")
    page.keyboard.press("Tab")
    expect(question.get_by_role("button", name="Close without copying")).to_be_focused()
    page.keyboard.press("Enter")
    dialog.wait_for(state="detached")
    assert key not in page.content()
    assert focused_id(page) == "keys-heading"

    # After Copy, Escape closes at once, without asking.
    dialog, key = mint(ui, project, "Copied first")
    page.get_by_role("button", name="Copy").click()
    page.keyboard.press("Escape")
    dialog.wait_for(state="detached")
    assert page.evaluate("navigator.clipboard.readText()") == key
    assert key not in page.content()
    assert focused_id(page) == "keys-heading"
    assert native == [], "no native dialog: a browser may refuse to show those"


def test_copy_while_the_dialog_asks_answers_the_question(ui, owner, project):
    page = ui.page
    ui.login(owner.email, PASSWORD)
    dialog, key = mint(ui, project, "Second thoughts")
    question = close_question(dialog)
    page.keyboard.press("Escape")
    expect(question).to_be_visible()

    dialog.get_by_role("button", name="Copy", exact=True).click()
    expect(question).to_be_hidden()
    assert page.evaluate("navigator.clipboard.readText()") == key
    page.keyboard.press("Escape")
    dialog.wait_for(state="detached")
    assert key not in page.content()


def test_with_the_browsers_dialogs_suppressed_the_new_key_dialog_still_closes(ui, owner, project):
    """A browser told to stop the page's dialogs answers window.confirm() "no" unseen: the
    question in the page is still asked and answered."""
    page = ui.page
    page.add_init_script("window.confirm = () => false; window.alert = () => {};")
    ui.login(owner.email, PASSWORD)
    dialog, key = mint(ui, project, "Suppressed")

    page.keyboard.press("Escape")
    close_question(dialog).get_by_role("button", name="Close without copying").click(timeout=3000)
    dialog.wait_for(state="detached")
    assert key not in page.content()
    assert focused_id(page) == "keys-heading"


def test_without_javascript_the_new_key_dialog_never_asks(ui_factory, owner, project):
    """The question is the script's: without it the dialog is a part of the page, which
    Escape does not close, and its own button closes it, as before."""
    ui = ui_factory(javascript=False)
    page = ui.page
    ui.login(owner.email, PASSWORD)
    dialog, key = mint(ui, project, "No script")

    page.keyboard.press("Escape")
    assert dialog.is_visible() and dialog.locator("code[data-secret]").inner_text() == key
    assert page.get_by_role("alertdialog").count() == 0
    dialog.get_by_role("button", name="I have copied it").click()
    dialog.wait_for(state="hidden")


@pytest.mark.parametrize("width", [1280, 390])
def test_the_new_key_dialogs_question_fits_and_reads_at_any_width(
    ui_factory, owner, project, width
):
    """On a phone too: the rolled key's dialog is the tallest (the old key's note); its
    question is scrolled into view, its answers inside the dialog, safe one first."""
    key, _ = make_key(KeyKind.SECRET, project=project, name="Payments CI", actor=owner)
    ui = ui_factory(viewport={"width": width, "height": 844})
    page = ui.page
    ui.login(owner.email, PASSWORD)
    ui.goto(keys_path(project))
    page.get_by_role("button", name=f"Roll Payments CI ({key.prefix})").click()
    page.get_by_label("24 hours").check()
    page.get_by_role("button", name="Roll key").click()
    dialog = page.locator("dialog[data-secret-dialog]")
    dialog.wait_for(state="visible")

    page.keyboard.press("Escape")
    question = close_question(dialog)
    expect(question).to_be_visible()
    keep = question.get_by_role("button", name="Keep it open")
    close = question.get_by_role("button", name="Close without copying")
    expect(keep).to_be_focused()
    expect(keep).to_be_in_viewport()
    expect(close).to_be_in_viewport()
    frame, asked = dialog.bounding_box(), question.bounding_box()
    assert frame["x"] <= asked["x"] and asked["x"] + asked["width"] <= frame["x"] + frame["width"]
    first, second = keep.bounding_box(), close.bounding_box()
    for box in (first, second):
        assert asked["x"] <= box["x"] and box["x"] + box["width"] <= asked["x"] + asked["width"]
    assert (first["y"], first["x"]) < (second["y"], second["x"]), "the safe answer first"
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    for element in (question.get_by_role("heading"), question.locator("p"), close):
        colour, background = element.evaluate(COLOURS)
        assert contrast_ratio(colour, background) >= 4.5, (colour, background)
    ui.shot(f"rolled-key-dialog-asks-{width}")


def test_errors_are_tied_to_their_fields_and_the_first_invalid_takes_the_focus(
    ui, owner, project, organization
):
    page = ui.page
    ui.login(owner.email, PASSWORD)
    ui.goto(keys_path(project))
    page.get_by_label("Name", exact=True).fill("No permissions")
    page.get_by_label("Rate limit requests").fill("0")
    page.get_by_label("Rate limit window in seconds").fill("60")
    page.get_by_role("button", name="Create key").click()
    page.locator(".field-error").first.wait_for()

    assert focused_id(page) == "perm-1", "focus goes to the first invalid field"
    permissions = page.locator("fieldset.permissions")
    assert permissions.get_attribute("aria-invalid") == "true"
    for described in (permissions, page.get_by_label("Rate limit requests")):
        ids = described.get_attribute("aria-describedby").split()
        texts = [page.locator(f"[id='{i}']").inner_text() for i in ids]
        assert any(
            text.startswith(("Choose at least one", "The number of requests")) for text in texts
        )
    assert "The number of requests must be at least 1." in page.inner_text("form.create-form")
    assert not ApiKey.objects.exists()
    ui.shot("create-key-errors")

    # Webhooks: a refused form is an ordinary page (200: no console error) with linked errors.
    ui.goto(f"/orgs/{organization.id}/webhooks/")
    page.get_by_label("Endpoint URL").fill("https://8.8.8.8/hooks/sigsentry")
    for box in page.locator("input[name=events]").all():
        box.uncheck()
    with page.expect_response(lambda r: r.request.method == "POST") as answered:
        page.get_by_role("button", name="Add webhook").click()
    assert answered.value.status == 200
    events = page.locator("fieldset.permissions")
    [error_id] = events.get_attribute("aria-describedby").split()
    assert page.locator(f"[id='{error_id}']").inner_text().startswith("Choose at least one")
    assert events.get_attribute("aria-invalid") == "true"
    assert focused_id(page) == "event-1"


def test_escape_closes_the_narrow_menu_and_returns_to_its_button(ui_factory, owner, project):
    narrow = ui_factory(viewport={"width": 390, "height": 844})
    narrow.login(owner.email, PASSWORD)
    page = narrow.page
    toggle = page.locator("[data-nav-toggle]")
    link = page.locator("[data-nav]").get_by_role("link", name="Members")

    toggle.click()
    assert link.is_visible()
    link.focus()
    page.keyboard.press("Escape")

    assert toggle.get_attribute("aria-expanded") == "false"
    assert not link.is_visible()
    assert page.evaluate("document.activeElement.hasAttribute('data-nav-toggle')")


def test_the_audit_log_filter_waits_for_its_button(ui, owner, organization, project):
    make_key(KeyKind.SECRET, project=project, actor=owner)
    page = ui.page
    ui.login(owner.email, PASSWORD)
    path = f"/orgs/{organization.id}/audit-log/"
    ui.goto(path)

    page.get_by_label("Action").focus()
    page.keyboard.press("ArrowDown")
    page.wait_for_timeout(500)
    assert page.url == ui.url(path), "arrowing through the choices must not reload the page"

    chosen = page.get_by_label("Action").input_value()
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(f"**action={chosen}*")


def test_on_a_phone_the_dialogs_long_answers_stay_inside_it(ui_factory, owner, organization):
    """Found in a 390 px screenshot: "Keep invitation" beside "Cancel invitation" overflowed
    the dialog's left edge, half cut off."""
    invite_member(
        actor_membership=Membership.objects.get(user=owner),
        email="newcomer@example.com",
        role="member",
    )
    phone = ui_factory(viewport={"width": 390, "height": 844})
    phone.login(owner.email, PASSWORD)
    page = phone.page
    phone.goto(f"/orgs/{organization.id}/members/")

    page.get_by_role("button", name="Cancel the invitation of newcomer@example.com").click()
    dialog = confirm_dialog(page)
    dialog.wait_for(state="visible")

    frame = dialog.bounding_box()
    for name in ("Keep invitation", "Cancel invitation"):
        box = dialog.get_by_role("button", name=name).bounding_box()
        assert frame["x"] <= box["x"] and box["x"] + box["width"] <= frame["x"] + frame["width"]
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    assert Invitation.objects.get().cancelled_at is None


#: The left edge (px) of where `text` starts and where it ends in `selector`'s text, as drawn.
DRAWN_EDGES = """([selector, text]) => {
  const root = document.querySelector(selector);
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const at = node.data.indexOf(text);
    if (at < 0) continue;
    const edge = (offset) => {
      const range = document.createRange();
      range.setStart(node, offset);
      range.setEnd(node, offset + 1);
      return range.getBoundingClientRect().left;
    };
    return [edge(at), edge(at + text.length - 1)];
  }
  return null;
}"""


def test_a_name_with_an_unclosed_override_reverses_nothing_after_it(ui, owner, project):
    """A Unicode audit: a name stored before the name rules (they refuse U+202E now, and
    stored rows were not rewritten) drew the rest of the revoke question and of the message
    after it backwards: "(ss_secret_…)?" read as ")…(" with the prefix reversed."""
    api_key, _ = make_key(KeyKind.SECRET, project=project, name="Nightly", actor=owner)
    ApiKey.objects.filter(pk=api_key.pk).update(name="Nightly\u202e")
    prefix = api_key.prefix
    ui.login(owner.email, PASSWORD)
    ui.goto(keys_path(project))
    page = ui.page

    page.get_by_role("button", name=f"Revoke Nightly\u202e ({prefix})").click()
    confirm_dialog(page).wait_for(state="visible")
    start, end = page.evaluate(DRAWN_EDGES, ["#confirm-dialog-question", prefix])
    assert start < end, "the prefix reads left to right in the question"
    ui.shot("revoke-dialog-unclosed-override")

    confirm_dialog(page).get_by_role("button", name="Revoke key").click()
    page.locator(".flash-stack").wait_for()
    start, end = page.evaluate(DRAWN_EDGES, [".flash-stack", "It stopped working."])
    assert start < end, "the message after the name reads left to right"
    ui.shot("revoked-message-unclosed-override")
