"""Downloads in Chromium: the audit log as CSV and JSON Lines, a key collection as CSV."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

from apps.apikeys.keyformat import KeyKind
from apps.audit.models import AuditEvent
from apps.audit.services import Action
from apps.projects.services import create_project
from tests.factories import PASSWORD, make_key

pytestmark = pytest.mark.browser

FORMULA = '=HYPERLINK("https://attacker.example/","Click")'


def download(ui, button_name: str, tmp_path):
    """(suggested file name, text) of the file the button's form downloads (a POST with the
    page's CSRF token: a download records and counts, so no link, which is a GET)."""
    with ui.page.expect_download() as started:
        ui.page.get_by_role("button", name=button_name, exact=True).click()
    done = started.value
    assert done.failure() is None
    path = tmp_path / done.suggested_filename
    done.save_as(path)
    return done.suggested_filename, path.read_bytes().decode("utf-8")


def test_audit_log_and_keys_download_in_the_browser(ui, owner, organization, project, tmp_path):
    create_project(actor=owner, organization=organization, name=FORMULA)
    make_key(KeyKind.SECRET, project=project, actor=owner, name="Zürich ingest")
    ui.login(owner.email, PASSWORD)

    ui.goto(f"/orgs/{organization.id}/audit-log/?action=project.created")
    ui.shot("audit-log-downloads")
    name, text = download(ui, "Download CSV", tmp_path)
    assert re.fullmatch(rf"sigsentry-audit-log-{organization.id}-project.created-\S+Z\.csv", name)
    rows = list(csv.DictReader(io.StringIO(text.removeprefix("\ufeff"), newline="")))
    assert [row["target.label"] for row in rows] == ["'" + FORMULA]

    name, text = download(ui, "Download JSON Lines", tmp_path)
    assert name.endswith(".jsonl")
    events = [json.loads(line) for line in text.splitlines()]
    assert [event["target"]["label"] for event in events] == [FORMULA]

    ui.goto(f"/projects/{project.id}/api-keys/")
    ui.shot("api-keys-download")
    name, text = download(ui, "Download all keys (CSV)", tmp_path)
    assert name.startswith(f"sigsentry-api-keys-{project.id}-")
    assert "Zürich ingest" in text
    assert AuditEvent.objects.filter(action=Action.AUDIT_LOG_EXPORTED).count() == 2
    assert ui.page.get_by_role("link", name="Download all keys (CSV)").count() == 0
    ui.page.wait_for_timeout(2100)  # a double click's lock (app.js) is over: a second copy
    name, again = download(ui, "Download all keys (CSV)", tmp_path)
    assert "Zürich ingest" in again
