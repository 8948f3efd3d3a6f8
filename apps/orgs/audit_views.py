"""Organization → Audit log: owners and admins read who did what, newest first."""

from __future__ import annotations

import json
import re
from datetime import datetime

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from apps.audit.models import AuditEvent
from apps.audit.services import Action
from apps.orgs.access import membership_for, require_manager
from core.decorators import dashboard_page

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


#: A time as the API writes it into details (`core.api.iso`, with or without a fraction).
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
    page = Paginator(events.order_by("-created_at", "-id"), PER_PAGE).get_page(
        request.GET.get("page")
    )
    context = {
        "organization": organization,
        "page": page,
        "events": [(event, _details(event.details)) for event in page],
        "actions": Action.ALL,
        "action": action,
    }
    return render(request, "audit/log.html", context)
