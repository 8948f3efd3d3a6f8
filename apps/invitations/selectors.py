"""Reads on invitations: by organization (through the caller's membership) or by token."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from apps.accounts.emails import normalize_email
from apps.invitations.models import Invitation
from apps.orgs.models import Membership
from core.errors import NotFound
from core.permissions import MANAGER_ROLES, Role

MAX_TOKEN_LENGTH = 128


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def roles_grantable_by(role: str | None) -> frozenset[str]:
    """The roles a member with `role` may invite people as (None: not a member).

    Owners and admins invite, only owners invite owners (SPEC §4.13). The one rule
    for sending an invitation and for keeping one alive: an invitation grants its
    role only while its inviter may still grant it (`inviter_may_still_grant`).
    """
    if role not in MANAGER_ROLES:
        return frozenset()
    if role == Role.OWNER:
        return frozenset(Role.values)
    return frozenset(Role.values) - {Role.OWNER}


def inviter_may_still_grant(invitation: Invitation, *, lock: bool = False) -> bool:
    """Whether the invitation's inviter is still a member who may invite as its role.

    An invitation acts with its inviter's authority, so it lapses with it: left to
    an owner being removed, it would let them invite their own second address and
    come back. An inviter whose account was deleted (`invited_by` null) or deactivated
    has no authority left either. `lock` locks their membership row (inside a transaction),
    so a removal or demotion running at the same time is either seen or waits.
    """
    if invitation.invited_by_id is None:
        return False
    memberships = Membership.objects.filter(
        organization_id=invitation.organization_id,
        user_id=invitation.invited_by_id,
        user__is_active=True,
    )
    if lock:
        memberships = memberships.select_for_update(of=("self",))  # not the user row
    role = memberships.values_list("role", flat=True).first()
    return invitation.role in roles_grantable_by(role)


def still_open(invitation: Invitation | None) -> bool:
    """Whether an invitation (as its token found it, or None) can still be accepted: pending,
    and its inviter may still grant its role. What its link, its page and signing up by it
    all ask first."""
    return (
        invitation is not None and invitation.is_pending() and inviter_may_still_grant(invitation)
    )


def pending_at(now) -> Q:
    """The invitations `Invitation.is_pending(now)` holds for, as a filter: not yet
    accepted, cancelled or expired."""
    return Q(accepted_at__isnull=True, cancelled_at__isnull=True, expires_at__gt=now)


def pending_invitations(membership: Membership) -> QuerySet[Invitation]:
    """The caller's organization's invitations not yet accepted, cancelled or expired."""
    return (
        Invitation.objects.filter(
            pending_at(timezone.now()), organization_id=membership.organization_id
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


def invitation_for_user(token: Any, user: Any) -> Invitation:
    """The pending invitation `token` names, if it was sent to `user`'s email; 404 otherwise.

    An unknown, cancelled, expired or used token and another person's
    invitation all look the same.
    """
    invitation = invitation_for_token(token)
    if (
        invitation is None
        or not invitation.is_pending()
        or normalize_email(user.email) != invitation.normalized_email
    ):
        raise NotFound("This invitation does not exist, has expired or was already used.")
    return invitation


def membership_from_accepting(invitation: Invitation, user: Any) -> Membership | None:
    """`user`'s membership, if they accepted `invitation` already and still belong: what a
    repeated accept (a reload, a double submit) answers."""
    if invitation.accepted_at is None or invitation.accepted_by_id != user.pk:
        return None
    return Membership.objects.filter(organization_id=invitation.organization_id, user=user).first()
