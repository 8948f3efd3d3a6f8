"""Who is calling, and may they do this on this project? The one place that decides.

The same functions serve API keys, JWT users and dashboard pages:

* `resolve_project` turns the caller and the `X-Project-Id` header into a
  project the caller can reach, or raises the SPEC §3 error. A project outside
  the caller's reach is `PROJECT_NOT_FOUND`, indistinguishable from one that
  does not exist.
* `has_permission` / `require_permission` answer from the key's explicit
  permissions or the user's current role (read on every request, so role
  changes apply at once).
* `manager_role_now` / `as_manager` hold an owner's or admin's change (keys,
  webhooks, projects, members, invitations, settings) to the role they still
  have when it commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import F

from apps.orgs.models import Membership, Organization
from apps.projects.models import Project
from apps.projects.selectors import ProjectRecord, project_by_id
from core.errors import (
    ApiError,
    NotFound,
    PermissionDenied,
    ProjectIdInvalid,
    ProjectIdRequired,
    ProjectMismatch,
    ProjectNotFound,
)
from core.permissions import MANAGER_ROLES, REQUIRES_ADMIN, ROLE_PERMISSIONS
from core.principal import Principal
from core.rows import as_uuid, bind, fetch_one
from core.validation import parse_uuid

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser as User


def parse_project_id(value: str | None) -> uuid.UUID:
    if value is None or not value.strip():
        raise ProjectIdRequired()
    try:
        return parse_uuid(value.strip())
    except ValueError as exc:
        raise ProjectIdInvalid() from exc


def project_for_user(user: User, project_id: uuid.UUID) -> tuple[Project, str]:
    """The project and the user's role in its organization; 404 for outsiders. One query."""
    project = (
        Project.objects.select_related("organization")
        .filter(id=project_id, organization__memberships__user=user)
        .annotate(caller_role=F("organization__memberships__role"))
        .first()
    )
    if project is None:
        raise ProjectNotFound()
    return project, project.caller_role


_PROJECT_FOR_MEMBER = f"""
    SELECT p.id, p.name, p.organization_id, m.role
    FROM {Project._meta.db_table} p
    JOIN {Membership._meta.db_table} m ON m.organization_id = p.organization_id
    WHERE p.id = %s AND m.user_id = %s
"""  # noqa: S608 (table names from the models; values are bound parameters)


def project_for_member(user_id: uuid.UUID, project_id: uuid.UUID) -> tuple[ProjectRecord, str]:
    """The project and the user's role in its organization; 404 for outsiders. One query."""
    row = fetch_one(
        _PROJECT_FOR_MEMBER,
        [bind(Project._meta.pk, project_id), bind(Membership._meta.get_field("user"), user_id)],
    )
    if row is None:
        raise ProjectNotFound()
    return ProjectRecord(as_uuid(row[0]), row[1], as_uuid(row[2])), row[3]


CONFINED_ELSEWHERE = "This organization key is confined to other projects (its projectIds)."


def project_id_for_key(key, header_value: str | None) -> uuid.UUID:
    """The id of the project a key's project-scoped request acts on, or its refusal
    (SPEC §2.1, §4.10), decided without a query."""
    if key.is_project_key:
        named = header_value is not None and header_value.strip()
        if named and parse_project_id(header_value) != key.project_id:
            raise ProjectMismatch()
        return key.project_id
    project_id = parse_project_id(header_value)
    if key.project_ids and str(project_id) not in key.project_ids:
        # An org key confined to other projects (SPEC §4.10), whether or not the named
        # project exists: the answer must not tell a confined key which ids do.
        raise ProjectMismatch(CONFINED_ELSEWHERE)
    return project_id


def resolve_project(principal: Principal, header_value: str | None) -> ProjectRecord:
    """The project a project-scoped request acts on (SPEC §2.1, §2.2)."""
    key = principal.key
    if key is not None:
        project_id = project_id_for_key(key, header_value)
        if key.is_project_key:
            return key.project
        # Organization keys name a project on every request; the tenant check is on the row.
        project = project_by_id(project_id)
        if project is None or project.organization_id != key.organization_id:
            raise ProjectNotFound()
        return project
    project, role = project_for_member(principal.user.pk, parse_project_id(header_value))
    principal.roles[project.organization_id] = role
    return project


def has_permission(principal: Principal, project: ProjectRecord, permission: str) -> bool:
    if principal.key is not None:
        key = principal.key
        if key.organization_id != project.organization_id:
            return False
        if key.is_project_key and key.project_id != project.id:
            return False
        return permission in key.permissions
    role = principal.roles.get(project.organization_id)
    return role is not None and permission in ROLE_PERMISSIONS[role]


def require_permission(principal: Principal, project: ProjectRecord, permission: str) -> None:
    if not has_permission(principal, project, permission):
        raise PermissionDenied(required=permission)


def membership_for(user: User, organization_id: uuid.UUID | str) -> Membership:
    """The caller's membership in an organization; 404 NOT_FOUND for outsiders."""
    try:
        org_uuid = parse_uuid(organization_id)
    except ValueError as exc:
        raise NotFound() from exc
    membership = (
        Membership.objects.select_related("organization")
        .filter(user=user, organization_id=org_uuid)
        .first()
    )
    if membership is None:
        raise NotFound()
    return membership


def can_manage(role: str) -> bool:
    return role in MANAGER_ROLES


def locked_role(user: User, organization_id: uuid.UUID) -> str | None:
    """Inside a transaction: the user's role in the organization (None: not a member, or
    the account is deactivated), read under locks held to the transaction's end: the
    organization's row, then the membership's. Every writer of an organization's
    memberships, or of what belongs to it, locks in that order (organization, memberships,
    then the rest; a demotion, removal or deactivation takes memberships only), so none
    waits on another in a circle. NO KEY: rows that merely refer to them are not held up."""
    Organization.objects.select_for_update(no_key=True).filter(pk=organization_id).exists()
    role = (
        Membership.objects.select_for_update(no_key=True)
        .filter(user=user, organization_id=organization_id)
        .values_list("role", flat=True)
        .first()
    )
    return role if role is not None and account_active_now(user.pk) else None


def account_active_now(user_id) -> bool:
    """Inside a transaction, after the memberships' locks: whether the account is still
    active. A deactivation holds the memberships until it commits, and a statement that
    waited for them still sees the account as it began, so it is read in a statement of its
    own. Its row is not locked: the admin's user page may update it before the deactivation
    takes the memberships, and the two orders would deadlock."""
    return get_user_model().objects.filter(pk=user_id, is_active=True).exists()


def accounts_active_now(user_ids: Iterable[Any]) -> set[uuid.UUID]:
    """`account_active_now` for several accounts at once (the owners an organization keeps):
    the ids of those still active, read in a statement of its own after the locks."""
    return set(
        get_user_model()
        .objects.filter(pk__in=list(user_ids), is_active=True)
        .values_list("pk", flat=True)
    )


def manager_role_now(
    user: User, organization_id: uuid.UUID, outsider: type[ApiError] = NotFound
) -> str:
    """Inside a transaction: the role of a caller who must still be an owner or admin, read
    again under the locks of `locked_role`, which a demotion or removal
    (`apps.orgs.services`) must wait for to change it: one that committed meanwhile
    refuses the change (403, or `outsider` once no longer a member), one that comes later
    waits for the transaction. So nothing commits on a role that is gone. Called first,
    before anything the change locks itself."""
    role = locked_role(user, organization_id)
    if role is None:
        raise outsider()
    if not can_manage(role):
        raise PermissionDenied(REQUIRES_ADMIN, "Only owners and admins can do this.")
    return role


@contextmanager
def as_manager(
    user: User, organization_id: uuid.UUID, outsider: type[ApiError] = NotFound
) -> Iterator[None]:
    """The transaction of a change only owners and admins make (`manager_role_now`), for
    the views of services whose actor is a user, not a membership (keys, webhooks,
    projects: the admin site and commands call them as staff)."""
    with transaction.atomic():
        manager_role_now(user, organization_id, outsider)
        yield


def require_manager(membership: Membership) -> Organization:
    """Owners and admins manage keys, projects and members; others get 403."""
    if not can_manage(membership.role):
        raise PermissionDenied(REQUIRES_ADMIN, "Only owners and admins can do this.")
    return membership.organization
