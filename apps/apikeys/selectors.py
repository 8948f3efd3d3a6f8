"""Reads on API keys, always scoped to what the caller may see."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Count, Q, QuerySet

from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey, KeyScope, KeyType, active_at
from apps.orgs.access import as_manager, can_manage, membership_for, project_for_user
from apps.orgs.models import Organization
from apps.projects.models import Project
from apps.projects.selectors import ProjectRecord
from core.errors import NotFound, PermissionDenied, ProjectNotFound
from core.permissions import REQUIRES_ADMIN
from core.rows import as_datetime, as_strings, as_uuid, fetch_one
from core.validation import parse_uuid


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What a request reads of the key it presents: the checks, the permissions,
    `lastUsedAt` tracking and `GET /v1/me`. Immutable; the management pages load
    keys through the ORM."""

    id: uuid.UUID
    organization_id: uuid.UUID
    organization_name: str
    project_id: uuid.UUID | None
    project_name: str | None
    type: str
    scope: str
    name: str
    prefix: str
    digest: str
    permissions: tuple[str, ...]
    legacy: bool
    allowed_origins: tuple[str, ...]
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    allowed_ips: tuple[str, ...]
    project_ids: tuple[str, ...]
    rate_limit_requests: int | None
    rate_limit_seconds: int | None

    @property
    def is_project_key(self) -> bool:
        return self.scope == KeyScope.PROJECT

    @property
    def project(self) -> ProjectRecord | None:
        if self.project_id is None:
            return None
        return ProjectRecord(self.project_id, self.project_name, self.organization_id)


_KEY_BY_DIGEST = f"""
    SELECT k.id, k.organization_id, o.name, k.project_id, p.name, k.type, k.scope, k.name,
           k.prefix, k.digest, k.permissions, k.legacy, k.allowed_origins,
           CAST(k.expires_at AS TEXT), CAST(k.revoked_at AS TEXT), CAST(k.last_used_at AS TEXT),
           k.allowed_ips, k.project_ids, k.rate_limit_requests, k.rate_limit_seconds
    FROM {ApiKey._meta.db_table} k
    JOIN {Organization._meta.db_table} o ON o.id = k.organization_id
    LEFT JOIN {Project._meta.db_table} p ON p.id = k.project_id
    WHERE k.digest = %s
"""  # noqa: S608 (table names from the models; the digest is a bound parameter)


def key_by_digest(digest: str) -> KeyRecord | None:
    """The key with this SHA-256 hex digest (unique index), with its organization and
    project names: one indexed query, nothing cached between calls, so a revocation
    applies to the next request on every process."""
    row = fetch_one(_KEY_BY_DIGEST, [digest])
    if row is None:
        return None
    return KeyRecord(
        as_uuid(row[0]),
        as_uuid(row[1]),
        row[2],
        as_uuid(row[3]),
        row[4],
        row[5],
        row[6],
        row[7],
        row[8],
        row[9],
        as_strings(row[10]),
        bool(row[11]),
        as_strings(row[12]),
        as_datetime(row[13]),
        as_datetime(row[14]),
        as_datetime(row[15]),
        as_strings(row[16]),
        as_strings(row[17]),
        row[18],
        row[19],
    )


def collection_filter(kind: KeyKind, *, organization_id: Any, project_id: Any = None) -> dict:
    """The rows that make up one key collection (SPEC §4.3).

    Project → API Keys holds the project's secret keys, legacy keys included.
    """
    if kind is KeyKind.ORGANIZATION:
        return {"organization_id": organization_id, "scope": KeyScope.ORGANIZATION}
    key_type = KeyType.PUBLIC if kind is KeyKind.PUBLIC else KeyType.SECRET
    return {"project_id": project_id, "scope": KeyScope.PROJECT, "type": key_type}


def keys_in_collection(
    kind: KeyKind, *, organization_id: Any, project_id: Any = None
) -> QuerySet[ApiKey]:
    """Newest first, revoked keys included; the project an org key was last used on loaded
    in the same query (the creator's address is the key's own, `created_by_email`)."""
    return (
        ApiKey.objects.filter(
            **collection_filter(kind, organization_id=organization_id, project_id=project_id)
        )
        .select_related("last_used_project")
        .order_by("-created_at", "-id")
    )


def rolled_key_ids(keys: Iterable[ApiKey]) -> set[uuid.UUID]:
    """Which of `keys` (a page of them) were rolled, i.e. have a successor: one query on
    the `replaces` index. Not an EXISTS beside the page's query: PostgreSQL plans that as a
    hashed subplan, a scan of every key of every tenant for each page."""
    ids = [key.id for key in keys]
    if not ids:
        return set()
    return set(ApiKey.objects.filter(replaces_id__in=ids).values_list("replaces_id", flat=True))


def key_in_collection(
    kind: KeyKind, key_id: Any, *, organization_id: Any, project_id: Any = None
) -> ApiKey:
    """One key of the collection; a key of any other collection is 404 NOT_FOUND."""
    try:
        key_uuid = parse_uuid(key_id)
    except ValueError as exc:
        raise NotFound() from exc
    api_key = (
        keys_in_collection(kind, organization_id=organization_id, project_id=project_id)
        .select_related("organization", "project")
        .filter(id=key_uuid)
        .first()
    )
    if api_key is None:
        raise NotFound()
    return api_key


def legacy_keys_in_scope(*, organization_id: Any, project_id: Any = None) -> QuerySet[ApiKey]:
    """Unrevoked legacy keys of a project, or of every project of an organization."""
    filters: dict[str, Any] = {
        "organization_id": organization_id,
        "legacy": True,
        "revoked_at__isnull": True,
    }
    if project_id is not None:
        filters["project_id"] = project_id
    return (
        ApiKey.objects.filter(**filters).select_related("project").order_by("-last_used_at", "name")
    )


@dataclass(frozen=True)
class Collection:
    """One key collection (SPEC §4.3) as the caller reaches it, with their role in its
    organization. The API and the dashboard pages both get it from `collection_for`."""

    kind: KeyKind
    organization: Organization
    project: Project | None
    role: str

    @property
    def can_manage(self) -> bool:
        return can_manage(self.role)

    @property
    def url(self) -> str:
        """The dashboard page of the collection."""
        if self.kind is KeyKind.ORGANIZATION:
            return f"/orgs/{self.organization.id}/api-keys/"
        segment = "sdk-keys" if self.kind is KeyKind.PUBLIC else "api-keys"
        return f"/projects/{self.project.id}/{segment}/"

    @property
    def scope_ids(self) -> dict:
        return {
            "organization_id": self.organization.id,
            "project_id": self.project.id if self.project else None,
        }

    def keys(self) -> QuerySet[ApiKey]:
        return keys_in_collection(self.kind, **self.scope_ids)

    def key(self, key_id: Any) -> ApiKey:
        """A key of this very collection; any other key id is 404 NOT_FOUND."""
        return key_in_collection(self.kind, key_id, **self.scope_ids)

    def require_manager(self) -> Collection:
        """Owners and admins mint, revoke, roll and change keys; others get 403."""
        if not self.can_manage:
            raise PermissionDenied(REQUIRES_ADMIN, "Only owners and admins can manage keys.")
        return self

    def managing(self, user: Any) -> AbstractContextManager[None]:
        """The transaction of a key change by `user`, who must still be an owner or admin
        when it commits (`apps.orgs.access.as_manager`)."""
        outsider = ProjectNotFound if self.project is not None else NotFound
        return as_manager(user, self.organization.id, outsider)


def collection_for(
    user: Any, kind: KeyKind, *, project_id: Any = None, org_id: Any = None
) -> Collection:
    """The collection a URL names, if `user` is a member of its organization.

    A project outside the caller's organizations is PROJECT_NOT_FOUND, an
    organization they are not in NOT_FOUND: both indistinguishable from ids that
    do not exist.
    """
    if kind is KeyKind.ORGANIZATION:
        membership = membership_for(user, org_id)
        return Collection(kind, membership.organization, None, membership.role)
    try:
        project_uuid = parse_uuid(project_id)
    except ValueError as exc:
        raise ProjectNotFound() from exc
    project, role = project_for_user(user, project_uuid)
    return Collection(kind, project.organization, project, role)


def active_key_counts(project: Any, now: datetime) -> dict[str, int]:
    """The project's active keys (`active_at`) by what its overview shows: `sdk` (public),
    `secret` (secret, not legacy) and `legacy`, in one query."""
    active = active_at(now)
    return ApiKey.objects.filter(project=project).aggregate(
        sdk=Count("id", filter=active & Q(type=KeyType.PUBLIC)),
        secret=Count("id", filter=active & Q(type=KeyType.SECRET, legacy=False)),
        legacy=Count("id", filter=active & Q(legacy=True)),
    )
