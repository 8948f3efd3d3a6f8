"""The key object of SPEC §4.3, as every response and webhook event shows a key.

Below both the services (webhook events carry the key object) and the API's
serializers, so neither imports the other to build it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from apps.apikeys.models import ApiKey, KeyScope
from core.times import iso


def key_json(api_key: ApiKey, now: datetime) -> dict[str, Any]:
    """A key as the API shows it (no plaintext, no digest); `status` as of `now`."""
    body: dict[str, Any] = {
        "id": str(api_key.id),
        "name": api_key.name,
        "type": str(api_key.type),
        "scope": str(api_key.scope),
        "prefix": api_key.prefix,
        "permissions": list(api_key.permissions),
        "status": str(api_key.status_at(now)),
        "legacy": api_key.legacy,
        "createdAt": iso(api_key.created_at),
        # The address as it was when the key was made (`created_by_email`); none once the
        # account is deleted.
        "createdBy": (
            {"id": str(api_key.created_by_id), "email": api_key.created_by_email}
            if api_key.created_by_id
            else None
        ),
        "expiresAt": iso(api_key.expires_at),
        "lastUsedAt": iso(api_key.last_used_at),
        "revokedAt": iso(api_key.revoked_at),
        "allowedOrigins": list(api_key.allowed_origins),
        "allowedIps": list(api_key.allowed_ips),
        "rateLimit": api_key.rate_limit,
        "lastUsedIp": api_key.last_used_ip,
        "lastUsedUserAgent": api_key.last_used_user_agent or None,
    }
    if api_key.scope == KeyScope.ORGANIZATION:
        project_id = api_key.last_used_project_id
        body["lastUsedProjectId"] = str(project_id) if project_id else None
        body["projectIds"] = list(api_key.project_ids)
    return body
