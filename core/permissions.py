"""Permissions and roles: the vocabulary of SPEC §2.2, and the DRF guard of every `/v1` view."""

from __future__ import annotations

from enum import StrEnum

from django.db import models
from rest_framework.permissions import BasePermission


class Permission(StrEnum):
    ANALYSIS_CREATE = "analysis:create"
    ANALYSIS_READ = "analysis:read"
    CONFIG_READ = "config:read"
    CONFIG_WRITE = "config:write"


ALL_PERMISSIONS: tuple[str, ...] = tuple(p.value for p in Permission)
SDK_LOCKED_PERMISSIONS: tuple[str, ...] = (Permission.ANALYSIS_CREATE, Permission.ANALYSIS_READ)


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"
    VIEWER = "viewer", "Viewer"


ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    Role.OWNER: frozenset(ALL_PERMISSIONS),
    Role.ADMIN: frozenset(ALL_PERMISSIONS),
    Role.MEMBER: frozenset(
        {Permission.ANALYSIS_READ, Permission.ANALYSIS_CREATE, Permission.CONFIG_READ}
    ),
    Role.VIEWER: frozenset({Permission.ANALYSIS_READ, Permission.CONFIG_READ}),
}

#: Roles that may manage keys, projects and members.
MANAGER_ROLES: frozenset[str] = frozenset({Role.OWNER, Role.ADMIN})

#: `details.required` of a PERMISSION_DENIED for the caller's role: the least role that may
#: (an admin may what a member may not; an owner what an admin may not).
REQUIRES_ADMIN = f"role:{Role.ADMIN.value}"
REQUIRES_OWNER = f"role:{Role.OWNER.value}"


def normalize_permissions(permissions: list[str] | tuple[str, ...]) -> list[str]:
    """Known permissions in canonical order, without duplicates."""
    wanted = set(permissions)
    return [p for p in ALL_PERMISSIONS if p in wanted]


class IsAuthenticatedPrincipal(BasePermission):
    """Every `/v1` endpoint needs a credential unless its view says otherwise."""

    def has_permission(self, request, view) -> bool:
        return request.user is not None and request.user.is_authenticated
