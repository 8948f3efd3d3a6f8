"""Reads on invitations: by organization (through the caller's membership) or by token."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from apps.invitations.models import Invitation
from apps.orgs.models import Membership

MAX_TOKEN_LENGTH = 128


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def pending_invitations(membership: Membership) -> QuerySet[Invitation]:
    """The caller's organization's invitations not yet accepted, cancelled or expired."""
    return (
        Invitation.objects.filter(
            organization_id=membership.organization_id,
            accepted_at__isnull=True,
            cancelled_at__isnull=True,
            expires_at__gt=timezone.now(),
        )
        .select_related("invited_by")
        .order_by("-created_at", "-id")
    )


def invitation_for_token(token: Any) -> Invitation | None:
    """The invitation a token names (pending or not), or None; one indexed lookup by digest."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    digest = token_digest(token)
    invitation = (
        Invitation.objects.select_related("organization", "invited_by")
        .filter(token_digest=digest)
        .first()
    )
    if invitation is None or not hmac.compare_digest(invitation.token_digest, digest):
        return None
    return invitation
