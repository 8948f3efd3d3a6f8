"""Who is calling, and may they do this on this project? The one place that decides.

The same functions serve API keys, JWT users and dashboard pages:

* `resolve_project` turns the caller and the `X-Project-Id` header into a
  project the caller can reach, or raises the SPEC §3 error. A project outside
  the caller's reach is `PROJECT_NOT_FOUND`, indistinguishable from one that
  does not exist.
* `has_permission` / `require_permission` answer from the key's explicit
  permissions or the user's current role (read on every request, so role
  changes apply at once).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.db.models import F

from apps.orgs.models import Membership
from apps.orgs.permissions import MANAGER_ROLES, ROLE_PERMISSIONS
from apps.projects.models import Project
from core.errors import (
    KeyManagementForbidden,
    NotFound,
    PermissionDenied,
    ProjectIdInvalid,
    ProjectIdRequired,
    ProjectMismatch,
    ProjectNotFound,
)
from core.rawselect import JoinedRowSelect

if TYPE_CHECKING:
    from apps.accounts.models import AuthSession, User
    from apps.apikeys.models import ApiKey
    from apps.orgs.models import Organization


_PROJECT_BY_ID = JoinedRowSelect(
    Project, related=("organization",), lookup_field="id", name="sigsentry_project_by_id"
)


@dataclass(slots=True)
class Principal:
    """The authenticated caller: a user (JWT) or an API key. `request.user` under /v1."""

    user: User | None = None
    key: ApiKey | None = None
    session: AuthSession | None = None
    #: Roles by organization id, filled as projects are resolved for a user.
    roles: dict[uuid.UUID, str] = field(default_factory=dict)

    is_authenticated = True
    is_anonymous = False

    @property
    def is_key(self) -> bool:
        return self.key is not None

    @property
    def pk(self) -> uuid.UUID:
        return self.key.pk if self.key is not None else self.user.pk  # type: ignore[union-attr]

    @property
    def label(self) -> str:
        return self.key.prefix if self.key is not None else self.user.email  # type: ignore[union-attr]


def parse_project_id(value: str | None) -> uuid.UUID:
    if value is None or not value.strip():
        raise ProjectIdRequired()
    try:
        return uuid.UUID(value.strip())
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


def resolve_project(principal: Principal, header_value: str | None) -> Project:
    """The project a project-scoped request acts on (SPEC §2.1, §2.2)."""
    key = principal.key
    if key is not None and key.is_project_key:
        named = header_value is not None and header_value.strip()
        if named and parse_project_id(header_value) != key.project_id:
            raise ProjectMismatch()
        return key.project
    project_id = parse_project_id(header_value)
    if key is not None:
        # Organization keys name a project on every request: the same precompiled
        # single-row select as the key lookup, then the tenant check on the row.
        project = _PROJECT_BY_ID.get(project_id)
        if project is None or project.organization_id != key.organization_id:
            raise ProjectNotFound()
        return project
    project, role = project_for_user(principal.user, project_id)
    principal.roles[project.organization_id] = role
    return project


def has_permission(principal: Principal, project: Project, permission: str) -> bool:
    if principal.key is not None:
        key = principal.key
        if key.organization_id != project.organization_id:
            return False
        if key.is_project_key and key.project_id != project.id:
            return False
        return permission in key.permissions
    role = principal.roles.get(project.organization_id)
    return role is not None and permission in ROLE_PERMISSIONS[role]


def require_permission(principal: Principal, project: Project, permission: str) -> None:
    if not has_permission(principal, project, permission):
        raise PermissionDenied(required=permission)


def forbid_keys(principal: Principal) -> None:
    """Programmatic keys never manage keys, organizations, projects or members."""
    if principal.key is not None:
        raise KeyManagementForbidden()


def membership_for(user: User, organization_id: uuid.UUID | str) -> Membership:
    """The caller's membership in an organization; 404 NOT_FOUND for outsiders."""
    try:
        org_uuid = uuid.UUID(str(organization_id))
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


def require_manager(membership: Membership) -> Organization:
    """Owners and admins manage keys, projects and members; others get 403."""
    if not can_manage(membership.role):
        raise PermissionDenied(message="Only owners and admins can do this.")
    return membership.organization
