"""Usage on the key pages (SPEC §4.9): what each row shows, the unused filter, a key's page.

* Each row of a key list gets a 30-day request chart (`add_row_usage`: one query
  and one Redis round trip for the whole page) beside its last IP and user agent.
* `?unused=30` / `?unused=90` lists only active keys that nothing used (no
  accepted request) for that many days, and that are at least that old: the
  keys an owner can revoke without breaking anything.
* `key_detail` (`<collection page>/<keyId>/`): the 48-hour and 90-day charts with
  refusals in their own colour, the totals and the recent client IPs. Any member
  of the organization, like the list; everyone else gets the 404 page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q, QuerySet
from django.http import HttpRequest, QueryDict
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_safe

from apps.apikeys import charts, guardrails
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import Granularity, active_at
from apps.apikeys.selectors import Collection, collection_for
from apps.apikeys.usage.answer import bucket_starts, recent_ips, usage_series
from apps.projects.models import Project
from core.decorators import dashboard_page

ROW_DAYS = 30
UNUSED_CHOICES = (30, 90)


def unused_days(params: QueryDict) -> int | None:
    """The list's `unused` filter (its query, or a row form's hidden field): 30 or 90 days,
    or None (every key)."""
    raw = params.get("unused", "")
    return int(raw) if raw in {str(days) for days in UNUSED_CHOICES} else None


def only_unused(keys: QuerySet, days: int | None, now: datetime) -> QuerySet:
    """Active keys at least `days` old with no accepted request in the last `days` days."""
    if days is None:
        return keys
    cutoff = now - timedelta(days=days)
    return keys.filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=cutoff),
        active_at(now),
        created_at__lte=cutoff,
    )


@dataclass(frozen=True)
class FilterChoice:
    label: str
    query: str
    selected: bool


def filter_choices(days: int | None) -> list[FilterChoice]:
    choices = [FilterChoice("All keys", "", days is None)]
    choices += [
        FilterChoice(f"Unused for {n} days", f"unused={n}", days == n) for n in UNUSED_CHOICES
    ]
    return choices


def add_row_usage(rows: list, now: datetime) -> None:
    """Give each row (`views.KeyRow`) its 30-day chart, for all rows at once."""
    if not rows:
        return
    starts = bucket_starts(Granularity.DAY, now, ROW_DAYS)
    series = usage_series([row.key.id for row in rows], Granularity.DAY, starts, now)
    for row in rows:
        row.usage = charts.sparkline(series[str(row.key.id)], now)


def _collection(request: HttpRequest, kind: KeyKind, project_id, org_id) -> Collection:
    collection = collection_for(request.principal.user, kind, project_id=project_id, org_id=org_id)
    request.dashboard_org = collection.organization
    request.dashboard_project = collection.project
    return collection


PAGE_TITLES = {
    KeyKind.PUBLIC: "SDK Keys",
    KeyKind.SECRET: "API Keys",
    KeyKind.ORGANIZATION: "Organization API Keys",
}


@dashboard_page
@require_safe
def key_detail(request: HttpRequest, kind: KeyKind, key_id, project_id=None, org_id=None):
    collection = _collection(request, kind, project_id, org_id)
    api_key = collection.key(key_id)
    now = timezone.now()
    hours = bucket_starts(Granularity.HOUR, now)
    days = bucket_starts(Granularity.DAY, now)
    hourly = usage_series([api_key.id], Granularity.HOUR, hours, now)[str(api_key.id)]
    daily = usage_series([api_key.id], Granularity.DAY, days, now)[str(api_key.id)]
    context = {
        "collection": collection,
        "collection_title": PAGE_TITLES[kind],
        "key": api_key,
        "status": api_key.status_at(now),
        "hourly": {
            "id": "hourly",
            "wide": charts.bar_chart(hourly, Granularity.HOUR, charts.WIDE, now),
            "narrow": charts.bar_chart(hourly, Granularity.HOUR, charts.NARROW, now),
        },
        "daily": {
            "id": "daily",
            "wide": charts.bar_chart(daily, Granularity.DAY, charts.WIDE, now),
            "narrow": charts.bar_chart(daily, Granularity.DAY, charts.NARROW, now),
        },
        "recent_ips": [ip | {"requests_text": f"{ip['requests']:,}"} for ip in recent_ips(api_key)],
        "limits": _limits(api_key, collection),
        "sunset_at": settings.LEGACY_KEYS_SUNSET_AT,
    }
    return render(request, "apikeys/key_usage.html", context)


def _limits(api_key, collection: Collection) -> dict:
    """The key's guardrails in full: its row shows the first IP and project with "+n", the
    rest only in a mouse tooltip (an accessibility audit: a viewer, who has no Edit limits,
    could not read them by keyboard or touch)."""
    projects = Project.objects.filter(
        organization=collection.organization, id__in=api_key.project_ids
    ).values_list("id", "name")
    return {
        "rate": guardrails.key_rate_label(api_key),
        "ips": list(api_key.allowed_ips),
        "origins": list(api_key.allowed_origins or []),
        "projects": guardrails.project_labels(
            api_key.project_ids, {str(pid): name for pid, name in projects}
        ),
    }
