"""Organization → Audit log: owners and admins read who did what, newest first."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_safe

from apps.audit.models import AuditEvent
from apps.audit.services import Action
from apps.orgs import services
from apps.orgs.access import as_manager, membership_for, require_manager
from apps.orgs.audit_api import event_json
from apps.orgs.selectors import events_of
from core import export
from core.decorators import dashboard_page
from core.validation import parse_uuid

PER_PAGE = 50


def _details(details: dict) -> list[tuple[str, str | datetime]]:
    """Event details as readable pairs (they hold names, roles, prefixes — never secrets);
    a time (a field named `…At`, `expiresAt`) as a datetime, which the page shows as every
    time (`7 Dec 2026, 13:02 UTC`, not `2026-12-07T13:02:23.627068Z`, a dates audit)."""
    if not isinstance(details, dict):
        return []
    return [(name, _time(name, value) or _readable(value)) for name, value in details.items()]


def _time(name: str, value) -> datetime | None:
    """The time a `…At` field holds, as the API writes it; None for anything else: a name
    that looks like one stays a name, and an impossible date (`2026-02-30T…Z`) is text,
    never a 500 (a review found a key named so broke its organization's log)."""
    if not (name.endswith("At") and isinstance(value, str) and _API_TIME.fullmatch(value)):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _readable(value) -> str:
    """Lists as `a, b`; objects (a key.updated's before and after) as compact JSON;
    nothing as "none" (not Python's `None`)."""
    if isinstance(value, list):
        return ", ".join(_readable(item) for item in value)
    if isinstance(value, dict):
        return json.dumps(value, separators=(", ", ": "), ensure_ascii=False)
    if value is None:
        return "none"
    return str(value)


#: A time as the API writes it into details (`core.times.iso`, with or without a fraction).
_API_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z")


@dashboard_page
@require_safe
def audit_log(request: HttpRequest, org_id) -> HttpResponse:
    """404 for outsiders (as every organization page); 403 for members without rights."""
    membership = membership_for(request.principal.user, org_id)
    request.dashboard_org = membership.organization
    organization = require_manager(membership)
    action = request.GET.get("action", "")
    events = AuditEvent.objects.filter(organization=organization).select_related("project")
    if action in Action.ALL:
        events = events.filter(action=action)
    else:
        action = ""
    page = _page_of(events, request.GET)
    total = events[: COUNT_UP_TO + 1].count()
    context = {
        "organization": organization,
        "page": page,
        "total": min(total, COUNT_UP_TO),
        "total_is_more": total > COUNT_UP_TO,
        "events": [(event, _details(event.details)) for event in page.events],
        "actions": Action.ALL,
        "action": action,
        "export_most": f"{export.MOST_ROWS:,}",
        "export_before": page.since,
        "downloads": [("export.csv", "Download CSV"), ("export.jsonl", "Download JSON Lines")],
    }
    return render(request, "audit/log.html", context)


#: The columns of the CSV download: the API's event (`event_json`), its objects flattened.
CSV_COLUMNS = (
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
EXPORT_TYPES = {"csv": export.CSV_TYPE, "jsonl": "application/jsonl"}


@dashboard_page
@require_http_methods(["GET", "HEAD", "POST"])
def audit_log_export(request: HttpRequest, org_id, file_format: str) -> HttpResponse:
    """The log as a file (CSV, or JSON Lines of the API's events), as the page filters it
    (`action`; `before=<event id>`: the events older than that one), newest first,
    `export.MOST_ROWS` at most. Owners and admins, as the page; 404 for outsiders.

    A form's POST (with its CSRF token): a download records an event and takes a place
    in the hour's downloads, and a GET is what another site can make a browser send (a
    link, a top-level navigation carries the SameSite=Lax cookies). A GET or HEAD, after
    the same checks, only leads to the page the download is on, with its filter and
    position (an old bookmark); it reads, records and counts nothing.

    The download is recorded first (`audit_log.exported`), so the file begins with its own
    event when the filter lets it in."""
    membership = membership_for(request.principal.user, org_id)
    organization = require_manager(membership)
    if request.method != "POST":
        return _to_the_page(organization.id, request.GET)
    action = request.POST.get("action") or None
    if action not in Action.ALL:
        action = None  # as the page: everything
    filtered = [action] if action else []
    name = "-".join(
        ["sigsentry-audit-log", str(organization.id), *filtered, export.stamp(timezone.now())]
    )
    filename, content_type = f"{name}.{file_format}", EXPORT_TYPES[file_format]
    refused = export.refused_download(request)
    if refused is not None:
        return refused
    with as_manager(request.principal.user, organization.id):
        services.record_audit_log_exported(
            organization,
            actor=request.principal.user,
            request=request,
            file_format=file_format,
            action=action,
        )
    events = events_of(membership, action=action)
    before = _event_in(events, request.POST.get("before"))
    if before is not None:
        events = export.older_than(events, before)
    rows = export.read_ahead(export.newest_first(events))
    if file_format == "csv":
        content = export.csv_lines(CSV_COLUMNS, (_csv_row(event_json(e)) for e in rows))
    else:
        content = export.json_lines(event_json(e) for e in rows)
    return export.download(content, filename=filename, content_type=content_type)


def _to_the_page(org_id, query) -> HttpResponse:
    """The audit log page, at the filter and position a download's address named (the page
    reads them as it reads its own: anything unknown is everything, from the newest)."""
    kept = {name: query[name] for name in ("action", "before") if query.get(name)}
    address = reverse("audit-log", args=[org_id])
    return redirect(f"{address}?{urlencode(kept)}" if kept else address)


def _csv_row(event: dict[str, Any]) -> list[Any]:
    actor, target = event["actor"], event["target"] or {}
    return [
        event["id"],
        event["action"],
        actor["type"],
        actor.get("id"),
        actor.get("email"),
        actor.get("prefix"),
        target.get("type"),
        target.get("id"),
        target.get("label"),
        event["projectId"],
        event["ip"],
        event["createdAt"],
        json.dumps(event["details"], ensure_ascii=False, separators=(",", ":")),
    ]


#: The heading counts this many events at most ("10,000+ events"): an exact count read
#: every event of the organization's log on every page.
COUNT_UP_TO = 10_000


@dataclass(frozen=True)
class LogPage:
    events: list[AuditEvent]
    newer: uuid.UUID | None  # the first event shown, when newer ones exist
    older: uuid.UUID | None  # the last event shown, when older ones exist
    #: The event this page shows the older ones of (`?before=`): a download from the page
    #: starts there too.
    since: uuid.UUID | None = None


def _page_of(events: QuerySet[AuditEvent], query) -> LogPage:
    """PER_PAGE events before (`?before=`) or after (`?after=`) the event of that id, newest
    first; the newest without either, or with an id this log does not hold. By position,
    not by page number: a large tenant's last page (OFFSET 200,000) took 434 ms, its first
    87 (a large-tenant audit). The position's plain bound on `created_at` beside the exact
    condition makes it a range of the index: with the OR alone PostgreSQL read every newer
    event and dropped it (220 ms at the 190,000th, a review; 0.2 ms with it)."""
    before, after = _event_in(events, query.get("before")), _event_in(events, query.get("after"))
    if after is not None:
        newer_first = events.filter(  # the plain bound first: the index's range (an OR is not)
            Q(created_at__gt=after.created_at) | Q(created_at=after.created_at, id__gt=after.id),
            created_at__gte=after.created_at,
        ).order_by("created_at", "id")
        rows = list(newer_first[: PER_PAGE + 1])
        shown = rows[:PER_PAGE][::-1]
        if shown:  # none newer (a link from a page that was the newest): the newest page
            return LogPage(shown, shown[0].id if len(rows) > PER_PAGE else None, shown[-1].id)
    elif before is not None:
        events = export.older_than(events, before)
    rows = list(events.order_by("-created_at", "-id")[: PER_PAGE + 1])
    shown = rows[:PER_PAGE]
    if not shown:
        return LogPage([], None, None, before.id if before is not None else None)
    return LogPage(
        shown,
        shown[0].id if before is not None else None,
        shown[-1].id if len(rows) > PER_PAGE else None,
        before.id if before is not None else None,
    )


def _event_in(events: QuerySet[AuditEvent], raw):
    try:
        event_id = parse_uuid(raw)
    except ValueError:
        return None
    return events.filter(id=event_id).values_list("id", "created_at", named=True).first()
