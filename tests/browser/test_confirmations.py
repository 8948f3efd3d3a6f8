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
    assert heading == f"Revoke “Nightly export” ({api_key.prefix}…)?"
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
        f"Revoke “Nightly export” ({api_key.prefix}…)?"
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


def test_escape_on_the_new_key_dialog_asks_before_the_key_is_lost(ui, owner, project):
    page = ui.page
    ui.login(owner.email, PASSWORD)
    dialog, key = mint(ui, project, "Escape hatch")
    questions = []
    answers = iter([False, False, True])

    def answer(confirm):
        questions.append(confirm.message)
        confirm.accept() if next(answers) else confirm.dismiss()

    page.on("dialog", answer)

    for _ in range(2):  # twice: Chromium lets a page keep a dialog open once per click
        page.keyboard.press("Escape")
        page.wait_for_timeout(200)
        assert dialog.is_visible()
        assert dialog.locator("code[data-secret]").inner_text().strip() == key
    ui.shot("new-key-dialog-after-escape")
    page.keyboard.press("Escape")
    dialog.wait_for(state="detached")

    assert questions == ["Close without copying? You will not see this key again."] * 3
    assert key not in page.content()
    assert focused_id(page) == "keys-heading"

    # After Copy, Escape closes at once.
    dialog, key = mint(ui, project, "Copied first")
    page.get_by_role("button", name="Copy").click()
    page.keyboard.press("Escape")
    dialog.wait_for(state="detached")
    assert len(questions) == 3
    assert page.evaluate("navigator.clipboard.readText()") == key
    assert focused_id(page) == "keys-heading"


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
