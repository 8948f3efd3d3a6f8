"""Reads on accounts, always scoped to one user."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import DEFERRED, Count, Model, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.accounts.models import AuthSession, User
from apps.orgs.access import accounts_active_now
from apps.orgs.models import Membership, Organization
from apps.orgs.selectors import held_counts
from core.permissions import Role
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
    services (`set_password` and `save` in a shell) ends none, but their tokens stop
    working, and the list showed them open (found by a session audit). Newest first."""
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
# that take models (a logout, an actor), so each is made by `Model.from_db`, the ORM's
# documented constructor for a loaded row, in its documented form: every concrete field,
# by name, `DEFERRED` for those not selected (read if ever asked for).
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


def _loaded(model: type[Model], values: dict[str, Any]) -> Model:
    """`model` as the ORM makes it from a row holding `values` (by attname)."""
    fields = model._meta.concrete_fields
    return model.from_db(
        connection.alias,
        [field.attname for field in fields if field.attname in values],
        [values.get(field.attname, DEFERRED) for field in fields],
    )


def session_with_user(session_id: uuid.UUID) -> AuthSession | None:
    """The session with this id and its user (`session.user`, no second query): one
    indexed query, nothing cached, so a logout or password change applies at once."""
    row = fetch_one(_SESSION_WITH_USER, [bind(AuthSession._meta.pk, session_id)])
    if row is None:
        return None
    (id_, user_id, expires, ended, jti, fingerprint, refreshed, seen,
     password, last_login, superuser, email, active, staff, joined, confirmed) = row  # fmt: skip
    user_id = as_uuid(user_id)
    session = _loaded(
        AuthSession,
        {
            "id": as_uuid(id_),
            "user_id": user_id,
            "expires_at": as_datetime(expires),
            "ended_at": as_datetime(ended),
            "refresh_jti": jti,
            "password_fingerprint": fingerprint,
            "last_refreshed_at": as_datetime(refreshed),
            "last_seen_at": as_datetime(seen),
        },
    )
    session.user = _loaded(
        User,
        {
            "id": user_id,
            "password": password,
            "last_login": as_datetime(last_login),
            "is_superuser": bool(superuser),  # SQLite answers 0 and 1
            "email": email,
            "is_active": bool(active),
            "is_staff": bool(staff),
            "date_joined": as_datetime(joined),
            "email_confirmed_at": as_datetime(confirmed),
        },
    )
    return session


@dataclass(frozen=True)
class SessionsShown:
    """What the account page lists of a user's open sessions: the caller's own (None if it
    is not one of them), a bounded number of the others, and how many are open in all."""

    current: AuthSession | None
    others: list[AuthSession]
    total: int

    @property
    def rows(self) -> list[AuthSession]:
        return [self.current, *self.others] if self.current is not None else self.others

    @property
    def not_shown(self) -> int:
        return self.total - len(self.rows)


def sessions_shown(user: User, current_id: uuid.UUID | None, *, others: int) -> SessionsShown:
    """The caller's session and the `others` other open sessions seen most recently (a
    session never seen since its login counts from then), with the total. A script that
    logs in on every run leaves thousands open for 30 days: listing them all made the
    account page 2.6 MB (a large-tenant audit). At most three queries, whatever their number."""
    open_sessions = open_sessions_of(user)
    seen = Coalesce("last_seen_at", "created_at")
    shown = list(
        open_sessions.exclude(id=current_id).order_by(seen.desc(), "-created_at", "-id")[:others]
    )
    current = open_sessions.filter(id=current_id).first() if current_id is not None else None
    # Fewer than asked for: they are all there, no need to count.
    total = len(shown) + (current is not None) if len(shown) < others else open_sessions.count()
    return SessionsShown(current=current, others=shown, total=total)


@dataclass(frozen=True, slots=True)
class DeletedOrganization:
    """An organization of which the user is the only member: it goes with their account."""

    organization: Organization
    projects: int
    #: Keys not revoked: any that still works stops at once.
    keys: int


@dataclass(frozen=True, slots=True)
class AccountDeletionPlan:
    """What deleting the user's account does to each of their organizations.

    `blocking`: they are its last owner who can act and others are members (SPEC §4.2: an
    organization always keeps one owner), so the account cannot go until they promote
    someone. `deleted`: nobody else is a member, the organization goes with the account.
    `left`: the organization lives on without them.
    """

    blocking: list[Organization]
    deleted: list[DeletedOrganization]
    left: list[Organization]


def account_deletion_plan(
    user: User, memberships: list[Membership] | None = None
) -> AccountDeletionPlan:
    """The plan for `user`'s memberships (read here, or the caller's, locked, with their
    organizations): a fixed number of queries however many organizations they are in."""
    if memberships is None:
        memberships = list(
            Membership.objects.filter(user_id=user.pk)
            .select_related("organization")
            .order_by("organization__name", "organization_id")
        )
    org_ids = [m.organization_id for m in memberships]
    members = dict(
        Membership.objects.filter(organization_id__in=org_ids)
        .values("organization_id")
        .annotate(n=Count("id"))
        .values_list("organization_id", "n")
    )
    owned = [m.organization_id for m in memberships if m.role == Role.OWNER]
    other_owners = list(
        Membership.objects.filter(organization_id__in=owned, role=Role.OWNER)
        .exclude(user_id=user.pk)
        .values_list("organization_id", "user_id")
    )
    active = accounts_active_now(user_id for _, user_id in other_owners)
    kept_owner = {org_id for org_id, user_id in other_owners if user_id in active}
    blocking, alone, left = [], [], []
    for membership in memberships:
        org_id = membership.organization_id
        if members.get(org_id, 1) <= 1:
            alone.append(membership.organization)
        elif membership.role == Role.OWNER and org_id not in kept_owner:
            blocking.append(membership.organization)
        else:
            left.append(membership.organization)
    held = held_counts([o.id for o in alone])
    deleted = [DeletedOrganization(o, *held[o.id]) for o in alone]
    return AccountDeletionPlan(blocking=blocking, deleted=deleted, left=left)
