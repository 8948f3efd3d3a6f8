"""Reads on audit events, scoped to the caller's organization."""

from __future__ import annotations

from django.db.models import QuerySet

from apps.audit.models import AuditEvent
from apps.orgs.models import Membership


def events_of(membership: Membership, *, action: str | None = None) -> QuerySet[AuditEvent]:
    """The events of the caller's organization, newest first; optionally one action only."""
    events = AuditEvent.objects.filter(organization_id=membership.organization_id)
    if action is not None:
        events = events.filter(action=action)
    return events.order_by("-created_at", "-id")
