"""Reads on API keys, always scoped to what the caller may see."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet

from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey, KeyScope, KeyType
from core.errors import NotFound
from core.rawselect import JoinedRowSelect

#: What a request reads of the key it authenticated with: the checks (revoked,
#: expiry, origins), the permissions, `lastUsedAt` tracking and `GET /v1/me`.
#: The other columns (who created or revoked it, when, what it replaced) are
#: for the management pages, which load keys through the ORM.
KEY_FIELDS_FOR_REQUESTS = (
    "type",
    "scope",
    "name",
    "prefix",
    "digest",
    "permissions",
    "legacy",
    "allowed_origins",
    "expires_at",
    "revoked_at",
    "last_used_at",
    "organization__name",
    "project__organization",
    "project__name",
)
_KEY_BY_DIGEST = JoinedRowSelect(
    ApiKey,
    related=("organization", "project"),
    lookup_field="digest",
    name="sigsentry_key_by_digest",
    only=KEY_FIELDS_FOR_REQUESTS,
)


def key_by_digest(digest: str) -> ApiKey | None:
    """The key with this digest, with its organization and project: one indexed query.

    Runs on every API-key request, so the statement is precompiled raw SQL
    (see `core.rawselect`); the result equals
    ``ApiKey.objects.select_related("organization", "project")
    .only(*KEY_FIELDS_FOR_REQUESTS).filter(digest=digest).first()``.
    Nothing is cached between calls: revocation applies on the next request.
    """
    return _KEY_BY_DIGEST.get(digest)


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
    """Newest first, revoked keys included; creator loaded in the same query."""
    return (
        ApiKey.objects.filter(
            **collection_filter(kind, organization_id=organization_id, project_id=project_id)
        )
        .select_related("created_by", "last_used_project")
        .order_by("-created_at", "-id")
    )


def key_in_collection(
    kind: KeyKind, key_id: Any, *, organization_id: Any, project_id: Any = None
) -> ApiKey:
    """One key of the collection; a key of any other collection is 404 NOT_FOUND."""
    try:
        key_uuid = uuid.UUID(str(key_id))
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
