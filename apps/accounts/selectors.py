"""Reads on accounts, always scoped to one user."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from apps.accounts.emails import normalize_email
from apps.accounts.models import AuthSession, User


def user_by_email(account: str) -> User | None:
    """The user whose normalized email is `account` (already normalized), or None."""
    for user in User.objects.filter(email__iexact=account):
        if normalize_email(user.email) == account:
            return user
    return None


def open_sessions_of(user: User) -> QuerySet[AuthSession]:
    """The user's sessions that still work: not ended, not past their cap. Newest first."""
    return AuthSession.objects.filter(
        user=user, ended_at__isnull=True, expires_at__gt=timezone.now()
    ).order_by("-created_at", "-id")


def open_session_of(user: User, session_id: Any) -> AuthSession | None:
    """One open session of `user` by id; None for another user's, an ended one or garbage."""
    try:
        session_uuid = uuid.UUID(str(session_id))
    except ValueError:
        return None
    return open_sessions_of(user).filter(id=session_uuid).first()
