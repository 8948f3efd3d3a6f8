"""Times as people in other zones enter them: the key forms' UTC date-time fields."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from core.times import iso
from tests.factories import PASSWORD, make_key

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


def test_the_overviews_relative_times_read_as_the_servers_at_the_unit_boundaries(
    ui, owner, project
):
    """The overview's script says "n ago" as the server's pages (`relative`) do: 360 days
    ago is "11 months ago" there, and the script said "12 months ago"."""
    ui.login(owner.email, PASSWORD)
    # The browser's clock, not the server's: `pytest --clock` moves the server's only.
    now = datetime.fromtimestamp(ui.page.evaluate("Date.now()") / 1000, UTC)
    ages = {
        "forty seconds": timedelta(seconds=40),
        "ninety seconds": timedelta(seconds=90),
        "360 days": timedelta(days=360),
        "364 days": timedelta(days=364),
        "366 days": timedelta(days=366),
    }
    results = [
        {
            "id": str(uuid.uuid4()),
            "projectId": str(project.id),
            "title": title,
            "input": "",
            "status": "queued",
            "createdAt": iso(now - age),
            "createdBy": {"type": "user", "email": owner.email},
            "followUps": [],
            "feedback": [],
        }
        for title, age in ages.items()
    ]
    ui.page.route(
        "**/v1/analyses*",
        lambda route: route.fulfill(
            status=200,
            content_type="application/json",
            body=json.dumps({"results": results, "next": None}),
        ),
    )
    ui.goto(f"/projects/{project.id}/")
    rows = ui.page.locator("[data-analyses-body] tr")
    rows.first.wait_for()
    said = {
        row.locator("td").first.inner_text(): row.locator("time").evaluate(
            "time => time.firstChild.textContent"
        )
        for row in rows.all()
    }
    assert said == {
        "forty seconds": "just now",
        "ninety seconds": "1 minute ago",
        "360 days": "11 months ago",
        "364 days": "11 months ago",
        "366 days": "1 year ago",
    }


def test_a_roll_with_a_date_but_no_time_stays_open_with_the_error_beside_the_field(
    ui_factory, owner, project
):
    """The roll form takes the server's errors (novalidate), so its expiry is checked as the
    create form's: a date alone is not "no expiry"."""
    key, _ = make_key(KeyKind.SECRET, project=project, name="Payments CI")
    year = timezone.now().year + 2
    ui = ui_factory(timezone_id="America/Los_Angeles", locale="en-US")
    page = ui.page
    ui.login(owner.email, PASSWORD)
    ui.goto(f"/projects/{project.id}/api-keys/")
    page.get_by_role("button", name=f"Roll Payments CI ({key.prefix})").click()
    dialog = page.locator(f"dialog#roll-{key.id}")
    dialog.wait_for(state="visible")
    expiry = dialog.get_by_label("New key expires (UTC)")
    expiry.focus()
    page.keyboard.type(f"0630{year}")
    dialog.get_by_role("button", name="Roll key").click()

    error = dialog.locator(".field-error")
    error.wait_for()
    assert error.inner_text() == INCOMPLETE
    assert dialog.is_visible()
    assert not ApiKey.objects.filter(replaces=key).exists()

    expiry.fill(f"{year}-06-30T12:00")
    assert f"Jun 30, {year}, 05:00 AM PDT." in dialog.locator(".field-local").inner_text()
    dialog.get_by_role("button", name="Roll key").click()
    page.locator("dialog[data-secret-dialog]").wait_for(state="visible")
    successor = ApiKey.objects.get(replaces=key)
    assert successor.expires_at == datetime(year, 6, 30, 12, 0, tzinfo=UTC)
    ui.shot("times-roll-expiry")
