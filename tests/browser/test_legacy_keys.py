"""Legacy keys in the dashboard: the banner, replacing one, and the pages around them.

Legacy keys only work before their sunset (SPEC §8: 26 May 2027), so the clock is moved
before it (`before_the_sunset`) and the dashboard served by a gunicorn of this test's own,
started after the move: the session's shared server keeps the real clock, on which this
test would fail from that day on.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.apikeys import keyformat
from tests.browser.conftest import call_api, contrast_ratio
from tests.browser.test_dashboard import row_for
from tests.conftest import live_server
from tests.factories import PASSWORD, make_legacy_key

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("before_the_sunset")]


@pytest.fixture
def live_url(before_the_sunset, transactional_db, smtp_server):
    server = live_server(smtp_server)
    yield server.url
    server.stop()


def test_the_server_keeps_the_moved_clock(live_url, owner, project):
    """What the test below relies on: on the real clock after the sunset, this fails."""
    _api_key, legacy = make_legacy_key(project, name="Clock check", permissions=["config:read"])
    status, _, headers = call_api(live_url, "/v1/me", legacy)
    assert status == 200 and "Sunset" in headers


def test_legacy_banner_replace_members_and_audit_log(ui, owner, member, viewer, project):
    _api_key, legacy = make_legacy_key(
        project,
        name="Traceback import",
        permissions=["analysis:read", "config:read"],
        last_used_at=timezone.now() - timedelta(minutes=3),
    )
    make_legacy_key(project, name="Dormant import", permissions=["analysis:read", "config:read"])
    page = ui.page
    ui.login(owner.email, PASSWORD)
    api_path = f"/projects/{project.id}/api-keys/"
    ui.goto(api_path)
    banner = page.locator("[data-legacy-banner]")
    assert "2 legacy keys stop working on 26 May 2027" in banner.inner_text()
    assert "Traceback import" in banner.inner_text() and "3 minutes ago" in banner.inner_text()
    # Its "!" reads at 4.5:1 on its disc, the disc stands out 3:1 from the banner (an
    # accessibility audit: white on amber was 2.1:1, the disc on the banner 2.0:1).
    icon = banner.locator(".banner-icon")
    glyph, disc, around = (
        icon.evaluate("e => getComputedStyle(e).color"),
        icon.evaluate("e => getComputedStyle(e).backgroundColor"),
        banner.evaluate("e => getComputedStyle(e).backgroundColor"),
    )
    assert contrast_ratio(glyph, disc) >= 4.5 and contrast_ratio(disc, around) >= 3
    ui.shot("api-keys-legacy-banner")

    row_for(ui, "Traceback import").get_by_role("button", name="Replace").click()
    page.locator("dialog[data-secret-dialog]").wait_for(state="visible")
    replacement = page.locator("code[data-secret]").inner_text().strip()
    assert replacement.startswith("ss_secret_")
    assert page.url == ui.url(api_path)
    ui.shot("legacy-key-replaced")
    status, body, _ = call_api(ui.base, "/v1/me", replacement)
    assert status == 200 and body["key"]["name"] == "Traceback import"
    assert body["key"]["permissions"] == ["analysis:read", "config:read"]
    status, _, headers = call_api(ui.base, "/v1/me", legacy)
    assert status == 200 and "Sunset" in headers  # the legacy key keeps working
    page.reload()
    new_row = ui.page.locator("tr.key-row", has_text="replaces").first
    assert f"replaces {keyformat.display_prefix(legacy)}" in new_row.inner_text()

    ui.goto(f"/orgs/{project.organization_id}/api-keys/")
    assert (
        "2 legacy keys stop working on 26 May 2027"
        in page.locator("[data-legacy-banner]").inner_text()
    )
    ui.shot("org-api-keys-legacy-banner")

    ui.goto(f"/orgs/{project.organization_id}/members/")
    page.get_by_label("Email", exact=True).fill("ghost@example.com")
    page.get_by_role("button", name="Invite").click()
    page.get_by_text("Invitation sent to ghost@example.com as Member.").wait_for()
    page.get_by_label(f"Role of {member.email}").select_option("viewer")
    page.locator("tr", has_text=member.email).get_by_role("button", name="Change role").click()
    page.get_by_text(f"{member.email} is now Viewer.").wait_for()
    ui.shot("members")

    ui.goto(f"/orgs/{project.organization_id}/audit-log/")
    assert "member.role_changed" in page.locator("table").inner_text()
    page.get_by_label("Action").select_option("key.minted")
    page.get_by_role("button", name="Filter").click()  # choosing alone does not reload
    page.wait_for_url(re.compile(r".*action=key\.minted"))
    assert "member.role_changed" not in page.locator("table").inner_text()
    ui.shot("audit-log")
