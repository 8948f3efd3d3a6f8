"""Times as people in other zones enter them: the key forms' UTC date-time fields."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.utils import timezone

from apps.apikeys.models import ApiKey
from tests.factories import PASSWORD

pytestmark = pytest.mark.browser

INCOMPLETE = "Complete both the date and the time (UTC), or clear the field."


def test_a_date_without_its_time_is_refused_beside_the_field_not_sent_as_no_expiry(
    ui_factory, owner, project
):
    """Chromium gives a datetime-local holding a date alone the value "", and the create
    form (novalidate) sent it: the key was minted with no expiry at all."""
    year = timezone.now().year + 2
    ui = ui_factory(timezone_id="America/Los_Angeles", locale="en-US")
    page = ui.page
    ui.login(owner.email, PASSWORD)
    ui.goto(f"/projects/{project.id}/api-keys/")
    page.get_by_label("Name", exact=True).fill("Nightly export")
    page.get_by_label("analysis:read", exact=True).check()
    expiry = page.get_by_label("Expires (UTC)")
    expiry.focus()
    page.keyboard.type(f"1231{year}")  # month, day, year: the time left empty
    page.get_by_role("button", name="Create key").click()

    field = page.locator(".create-form .field", has=expiry)
    field.locator(".field-error").wait_for()
    assert field.locator(".field-error").inner_text() == INCOMPLETE
    assert expiry.get_attribute("aria-invalid") == "true"
    assert expiry.evaluate("input => document.activeElement === input")
    assert not ApiKey.objects.exists()
    ui.shot("times-incomplete-expiry")

    # Completed: the error goes, and the UTC moment is said in the viewer's own zone.
    expiry.fill(f"{year}-12-31T23:59")
    assert field.locator(".field-error").count() == 0
    local = field.locator(".field-local")
    assert local.inner_text().startswith("Your time (America/Los_Angeles): ")
    assert f"Dec 31, {year}, 03:59 PM PST." in local.inner_text()
    page.get_by_role("button", name="Create key").click()
    page.locator("dialog[data-secret-dialog]").wait_for(state="visible")
    key = ApiKey.objects.get()
    assert key.expires_at == datetime(year, 12, 31, 23, 59, tzinfo=UTC)


def test_the_expiry_is_said_in_the_viewers_zone_and_locale_and_not_in_utc(
    ui_factory, owner, project
):
    year = timezone.now().year + 2
    kolkata = ui_factory(timezone_id="Asia/Kolkata", locale="de-DE")
    kolkata.login(owner.email, PASSWORD)
    kolkata.goto(f"/projects/{project.id}/api-keys/")
    expiry = kolkata.page.get_by_label("Expires (UTC)")
    local = kolkata.page.locator(".create-form .field-local")
    assert local.is_hidden()  # nothing chosen, nothing said
    expiry.fill(f"{year}-12-31T23:59")
    # The next day there; a month named, never 01/01 (day or month first?).
    assert f"1. Jan. {year + 1}, 05:29" in local.inner_text()
    assert "GMT+5:30" in local.inner_text()
    assert "id_expires_at-local" in expiry.get_attribute("aria-describedby").split()
    kolkata.shot("times-expiry-in-kolkata")

    in_utc = ui_factory(timezone_id="UTC", locale="en-GB")
    in_utc.login(owner.email, PASSWORD)
    in_utc.goto(f"/projects/{project.id}/api-keys/")
    in_utc.page.get_by_label("Expires (UTC)").fill(f"{year}-12-31T23:59")
    assert in_utc.page.locator(".create-form .field-local").is_hidden()  # the same time
