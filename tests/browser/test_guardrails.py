"""Key guardrails in Chromium: the create form, the "Edit limits" dialog, the lifetime policy."""

from __future__ import annotations

import pytest

from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from apps.audit.models import AuditEvent
from tests.browser.conftest import SCREENSHOTS, call_api
from tests.factories import PASSWORD, make_key

pytestmark = pytest.mark.browser


def field_error(scope, label: str) -> str:
    """The error text shown with the field labelled `label` (inside `scope`)."""
    field = scope.locator(".field", has=scope.page.get_by_label(label))
    return field.locator(".field-error").inner_text()


def test_create_form_and_edit_limits_dialog(ui_factory, owner, project, other_project):
    ui = ui_factory()
    page = ui.page
    ui.login(owner.email, PASSWORD)
    keys_path = f"/orgs/{project.organization_id}/api-keys/"
    ui.goto(keys_path)

    # A validation error from the service shows next to its field; the input is kept.
    page.get_by_label("Name", exact=True).fill("Edge worker")
    page.get_by_label("analysis:read", exact=True).check()
    page.get_by_label("Rate limit requests").fill("5")
    page.get_by_label("Rate limit window in seconds").fill("60")
    page.get_by_label("Allowed IPs").fill("127.0.0.1\n10.0.0.300")
    page.get_by_label(project.name, exact=True).check()
    page.get_by_role("button", name="Create key").click()
    page.locator(".field-error").first.wait_for()
    create = page.locator("form.create-form")
    assert "Not a CIDR or IP address: 10.0.0.300" in field_error(create, "Allowed IPs")
    assert page.get_by_label("Name", exact=True).input_value() == "Edge worker"
    assert page.get_by_label("Rate limit requests").input_value() == "5"
    assert page.get_by_label(project.name, exact=True).is_checked()
    assert not ApiKey.objects.exists()
    ui.shot("guardrails-create-error")

    page.get_by_label("Allowed IPs").fill("127.0.0.1\n::1")
    page.get_by_label("analysis:read", exact=True).check()
    page.get_by_role("button", name="Create key").click()
    dialog = page.locator("dialog[data-secret-dialog]")
    dialog.wait_for(state="visible")
    key = dialog.locator("code[data-secret]").inner_text().strip()
    page.get_by_role("button", name="I have copied it").click()
    dialog.wait_for(state="detached")
    row = page.locator("tr.key-row", has_text="Edge worker")
    badges = row.locator(".guardrail-badges").inner_text()
    assert "Limit: 5 / minute" in badges and "IPs: 127.0.0.1/32 +1" in badges
    assert f"Projects: {project.name}" in badges
    ui.shot("guardrails-row-badges")

    on = {"X-Project-Id": str(project.id)}
    status, _, headers = call_api(ui.base, "/v1/analyses", key, on)
    assert status == 200 and headers["X-RateLimit-Limit"] == "5"
    assert headers["X-RateLimit-Remaining"] == "4"
    status, body, _ = call_api(
        ui.base, "/v1/analyses", key, {"X-Project-Id": str(other_project.id)}
    )
    assert (status, body["error"]["code"]) == (403, "PROJECT_MISMATCH")

    # Edit limits: a native modal dialog; Cancel closes it without sending anything.
    row.get_by_role("button", name="Edit limits").click()
    limits = page.locator("dialog.form-dialog[open]")
    limits.wait_for(state="visible")
    assert page.evaluate("document.querySelector('dialog.form-dialog[open]').matches(':modal')")
    assert limits.get_by_label("Allowed IPs").input_value() == "127.0.0.1/32\n::1/128"
    limits.get_by_role("button", name="Cancel").click()
    limits.wait_for(state="hidden")
    assert not AuditEvent.objects.filter(action="key.updated").exists()

    # A server-side error reopens the dialog with the message next to the field.
    row.get_by_role("button", name="Edit limits").click()
    limits.get_by_label("Allowed IPs").fill("2001:db8::/129")
    limits.get_by_role("button", name="Save limits").click()
    page.wait_for_load_state()
    limits = page.locator("dialog.form-dialog[open]")
    limits.wait_for(state="visible")
    assert page.evaluate("document.querySelector('dialog.form-dialog[open]').matches(':modal')")
    assert "Not a CIDR or IP address: 2001:db8::/129" in field_error(limits, "Allowed IPs")
    ui.shot("guardrails-edit-limits-error")
    assert not AuditEvent.objects.filter(action="key.updated").exists()

    # Lift the rate limit and widen the key to every project: effective at once.
    limits.get_by_label("Rate limit requests").fill("")
    limits.get_by_label("Rate limit window in seconds").fill("")
    limits.get_by_label("Allowed IPs").fill("127.0.0.0/8")
    limits.get_by_label(project.name, exact=True).uncheck()
    limits.get_by_role("button", name="Save limits").click()
    page.get_by_text("Saved the limits of “Edge worker”.").wait_for()
    assert page.locator("dialog.form-dialog[open]").count() == 0
    badges = page.locator("tr.key-row", has_text="Edge worker").locator(".guardrail-badges")
    assert badges.inner_text().strip() == "IPs: 127.0.0.0/8"
    status, _, headers = call_api(
        ui.base, "/v1/analyses", key, {"X-Project-Id": str(other_project.id)}
    )
    assert status == 200 and "X-RateLimit-Limit" not in headers
    event = AuditEvent.objects.get(action="key.updated")
    assert event.details["fields"] == ["rateLimit", "allowedIps", "projectIds"]
    assert event.details["before"]["rateLimit"] == {"requests": 5, "perSeconds": 60}
    assert event.details["after"]["rateLimit"] is None

    # The owner sets a lifetime policy; the key (no expiry) is listed as outliving it.
    page.get_by_label("Maximum key lifetime (days)").fill("30")
    page.get_by_role("button", name="Save policy").click()
    page.get_by_text("must now expire within 30 days").wait_for()
    policy = page.locator("[data-key-policy]")
    assert "1 key outlives this policy" in policy.inner_text()
    assert "Edge worker" in policy.inner_text()
    assert "Outlives policy" in page.locator("tr.key-row", has_text="Edge worker").inner_text()
    ui.shot("guardrails-policy")

    narrow = ui_factory(viewport={"width": 390, "height": 844})
    narrow.login(owner.email, PASSWORD)
    narrow.goto(keys_path)
    narrow.shot("guardrails-org-keys-narrow")
    narrow.page.locator("tr.key-row", has_text="Edge worker").get_by_role(
        "button", name="Edit limits"
    ).click()
    narrow.page.locator("dialog.form-dialog[open]").wait_for(state="visible")
    # The modal as seen (a full-page shot would draw it over the top of a long page).
    narrow.page.screenshot(path=str(SCREENSHOTS / "guardrails-edit-limits-narrow.png"))


def test_edit_limits_lists_the_projects_with_the_keys_checked(
    ui_factory, owner, project, other_project
):
    """The dialog copies the page's one list of projects when it opens: each key's own boxes
    checked, each box labelled, and what is sent is what the box says."""
    confined, _ = make_key(
        KeyKind.ORGANIZATION, project=project, name="Confined", project_ids=[str(project.id)]
    )
    make_key(KeyKind.ORGANIZATION, project=project, name="Everywhere")
    ui = ui_factory()
    page = ui.page
    ui.login(owner.email, PASSWORD)
    ui.goto(f"/orgs/{project.organization_id}/api-keys/")

    page.locator("tr.key-row", has_text="Everywhere").get_by_role(
        "button", name="Edit limits"
    ).click()
    limits = page.locator("dialog.form-dialog[open]")
    assert not limits.get_by_label(project.name, exact=True).is_checked()
    assert not limits.get_by_label(other_project.name, exact=True).is_checked()
    limits.get_by_role("button", name="Cancel").click()
    limits.wait_for(state="hidden")

    page.locator("tr.key-row", has_text="Confined").get_by_role(
        "button", name="Edit limits"
    ).click()
    limits = page.locator("dialog.form-dialog[open]")
    assert limits.get_by_label(project.name, exact=True).is_checked()
    assert not limits.get_by_label(other_project.name, exact=True).is_checked()
    limits.locator("label", has_text=other_project.name).click()  # the label toggles its box
    assert limits.get_by_label(other_project.name, exact=True).is_checked()
    ui.shot("guardrails-edit-limits-projects")
    limits.get_by_role("button", name="Save limits").click()
    page.get_by_text("Saved the limits of “Confined”.").wait_for()

    confined.refresh_from_db()
    assert sorted(confined.project_ids) == sorted([str(project.id), str(other_project.id)])
    event = AuditEvent.objects.get(action="key.updated")
    assert event.details["fields"] == ["projectIds"]
