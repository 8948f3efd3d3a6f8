"""Organization → Audit log: owners and admins read who did what, newest first."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from apps.audit.models import AuditEvent
from apps.audit.services import Action
from apps.orgs.access import membership_for, require_manager
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
    }
    return render(request, "audit/log.html", context)


#: The heading counts this many events at most ("10,000+ events"): an exact count read
#: every event of the organization's log on every page.
COUNT_UP_TO = 10_000


@dataclass(frozen=True)
class LogPage:
    events: list[AuditEvent]
    newer: uuid.UUID | None  # the first event shown, when newer ones exist
    older: uuid.UUID | None  # the last event shown, when older ones exist


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
        events = events.filter(
            Q(created_at__lt=before.created_at) | Q(created_at=before.created_at, id__lt=before.id),
            created_at__lte=before.created_at,
        )
    rows = list(events.order_by("-created_at", "-id")[: PER_PAGE + 1])
    shown = rows[:PER_PAGE]
    if not shown:
        return LogPage([], None, None)
    return LogPage(
        shown,
        shown[0].id if before is not None else None,
        shown[-1].id if len(rows) > PER_PAGE else None,
    )


def _event_in(events: QuerySet[AuditEvent], raw):
    try:
        event_id = parse_uuid(raw)
    except ValueError:
        return None
    return events.filter(id=event_id).values_list("id", "created_at", named=True).first()
