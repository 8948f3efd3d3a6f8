"""Reads on organizations, memberships and projects, scoped to the caller.

Organization-wide reads take the caller's `Membership` (from
`apps.orgs.access.membership_for`, which answers 404 to outsiders), so a query
can only ever reach an organization the caller belongs to.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet

from apps.audit.models import AuditEvent
from apps.orgs.models import Membership
from core.errors import NotFound


def memberships_of(user: Any) -> QuerySet[Membership]:
    """The user's memberships with their organizations, by organization name."""
    return (
        Membership.objects.filter(user=user)
        .select_related("organization")
        .order_by("organization__name", "organization__id")
    )


def members_of(membership: Membership) -> QuerySet[Membership]:
    """Everyone in the caller's organization, with their user, by email."""
    return (
        Membership.objects.filter(organization_id=membership.organization_id)
        .select_related("user", "organization")
        .order_by("user__email", "id")
    )


def member_of(membership: Membership, user_id: Any) -> Membership:
    """One member of the caller's organization by user id; 404 NOT_FOUND otherwise."""
    try:
        user_uuid = uuid.UUID(str(user_id))
    except ValueError as exc:
        raise NotFound() from exc
    target = members_of(membership).filter(user_id=user_uuid).first()
    if target is None:
        raise NotFound()
    return target


def events_of(membership: Membership, *, action: str | None = None) -> QuerySet[AuditEvent]:
    """The events of the caller's organization, newest first; optionally one action only."""
    events = AuditEvent.objects.filter(organization_id=membership.organization_id)
    if action is not None:
        events = events.filter(action=action)
    return events.order_by("-created_at", "-id")
