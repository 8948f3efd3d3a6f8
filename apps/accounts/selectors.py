"""Reads on accounts, always scoped to one user."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from apps.accounts.models import AuthSession, User
from core.rows import as_datetime, as_uuid, bind, fetch_one
from core.validation import parse_uuid


def user_by_email(account: str) -> User | None:
    """The user whose email is `account` (already normalized), or None.

    Stored emails are normalized, so an exact match is the whole lookup, on the unique
    index, as the login's (`UserManager.get_by_natural_key`). A look-alike row that the
    0002 migration left to the operator is never the answer: it cannot log in, and it
    gets no reset mail either.
    """
    return User.objects.filter(email=account).first()


def open_sessions_of(user: User) -> QuerySet[AuthSession]:
    """The user's sessions that still work: not ended, not past their cap, made with the
    password the user has now (`tokens.session_fingerprint`): a password set outside the
    services (`manage.py changepassword`) ends none, but their tokens stop working, and
    the list showed them open (found by a session audit). Newest first."""
    return AuthSession.objects.filter(
        user=user,
        ended_at__isnull=True,
        expires_at__gt=timezone.now(),
        password_fingerprint=user.password_fingerprint(),
    ).order_by("-created_at", "-id")


def open_session_of(user: User, session_id: Any) -> AuthSession | None:
    """One open session of `user` by id; None for another user's, an ended one or garbage."""
    try:
        session_uuid = parse_uuid(session_id)
    except ValueError:
        return None
    return open_sessions_of(user).filter(id=session_uuid).first()


# The session a JWT names, with its user: read on every request a person makes (API and
# dashboard), so one explicit statement, not a queryset (the ORM built and compiled its
# join for ~450 µs of the JWT check's ~940, bench/README.md). The two go on into services
# that take models (a logout, an actor), so they are built by Django's documented
# `Model.from_db`, the ORM's own constructor for a loaded row. Values in each model's
# field order, as `from_db` takes them; the session's other columns (created_at,
# end_reason, ip, user_agent) and the user's pending email code and admin session counter
# (`session_epoch`, the admin's only) are deferred and read if ever asked for.
_SESSION_WITH_USER = f"""
    SELECT s.id, s.user_id, CAST(s.expires_at AS TEXT), CAST(s.ended_at AS TEXT),
           s.refresh_jti, s.password_fingerprint, CAST(s.last_refreshed_at AS TEXT),
           CAST(s.last_seen_at AS TEXT),
           u.password, CAST(u.last_login AS TEXT), u.is_superuser, u.email, u.is_active,
           u.is_staff, CAST(u.date_joined AS TEXT), CAST(u.email_confirmed_at AS TEXT)
    FROM {AuthSession._meta.db_table} s
    JOIN {User._meta.db_table} u ON u.id = s.user_id
    WHERE s.id = %s
"""  # noqa: S608 (table names from the models; the id is a bound parameter)
_SESSION_FIELDS = (
    "id", "user_id", "expires_at", "ended_at", "refresh_jti", "password_fingerprint",
    "last_refreshed_at", "last_seen_at",
)  # fmt: skip
_USER_FIELDS = (
    "password", "last_login", "is_superuser", "id", "email", "is_active", "is_staff",
    "date_joined", "email_confirmed_at",
)  # fmt: skip


def session_with_user(session_id: uuid.UUID) -> AuthSession | None:
    """The session with this id and its user (`session.user`, no second query): one
    indexed query, nothing cached, so a logout or password change applies at once."""
    row = fetch_one(_SESSION_WITH_USER, [bind(AuthSession._meta.pk, session_id)])
    if row is None:
        return None
    user_id = as_uuid(row[1])
    expires_at, ended_at, refreshed_at, seen_at = (as_datetime(v) for v in (*row[2:4], *row[6:8]))
    session = AuthSession.from_db(
        connection.alias,
        _SESSION_FIELDS,
        [as_uuid(row[0]), user_id, expires_at, ended_at, row[4], row[5], refreshed_at, seen_at],
    )
    last_login, joined, confirmed = (as_datetime(v) for v in (row[9], row[14], row[15]))
    flags = bool(row[10]), bool(row[12]), bool(row[13])  # superuser, active, staff
    values = [row[8], last_login, flags[0], user_id, row[11], *flags[1:], joined, confirmed]
    session.user = User.from_db(connection.alias, _USER_FIELDS, values)
    return session
