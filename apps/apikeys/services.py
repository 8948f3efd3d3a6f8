"""Writes on API keys: mint, revoke, roll, replace, leak reports, allowed origins, last use.

Invariant: the plaintext key exists only in the `MintedKey` these functions
return; the row holds its SHA-256 digest and display prefix, nothing more.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone

from apps.apikeys import keyformat
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey, KeyScope, KeyStatus, KeyType
from apps.apikeys.selectors import KeyRecord
from apps.audit.models import AuditEvent
from apps.audit.services import Action, record_event
from apps.orgs.models import Organization
from apps.projects.models import Project
from core import throttling
from core.errors import PermissionsLocked, ValidationFailed
from core.net import client_ip, user_agent
from core.permissions import ALL_PERMISSIONS, SDK_LOCKED_PERMISSIONS, normalize_permissions
from core.validation import clean_name

logger = logging.getLogger("sigsentry.apikeys")

LAST_USED_INTERVAL = timedelta(seconds=60)
MAX_GRACE_SECONDS = 7 * 24 * 3600
MAX_ALLOWED_ORIGINS = 20
MAX_LEAK_REPORT_KEYS = 100
_ORIGIN_RE = re.compile(
    r"https://(?P<host>[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?)*)"
    r"(?::(?P<port>[0-9]{1,5}))?"
)


@dataclass(frozen=True, slots=True)
class MintedKey:
    api_key: ApiKey
    key: str  # shown once, never stored


def validate_permissions(kind: KeyKind, permissions: Any) -> list[str]:
    if kind is KeyKind.PUBLIC:
        if permissions is None:
            return list(SDK_LOCKED_PERMISSIONS)
        if (
            not isinstance(permissions, list | tuple)
            or not all(isinstance(p, str) for p in permissions)
            or len(permissions) != len(SDK_LOCKED_PERMISSIONS)
            or set(permissions) != set(SDK_LOCKED_PERMISSIONS)
        ):
            raise PermissionsLocked()
        return list(SDK_LOCKED_PERMISSIONS)
    if not isinstance(permissions, list | tuple) or not permissions:
        raise ValidationFailed({"permissions": ["Choose at least one permission."]})
    unknown = [p for p in permissions if not isinstance(p, str) or p not in ALL_PERMISSIONS]
    if unknown:
        raise ValidationFailed(
            {"permissions": [f"Unknown permission: {str(p)[:40]}" for p in unknown]}
        )
    return normalize_permissions(permissions)


def validate_expires_at(expires_at: datetime | None, now: datetime) -> datetime | None:
    if expires_at is None:
        return None
    if timezone.is_naive(expires_at):
        raise ValidationFailed({"expiresAt": ["Give a time zone (for example ...Z)."]})
    if expires_at <= now:
        raise ValidationFailed({"expiresAt": ["Must be in the future."]})
    return expires_at


def validate_allowed_origins(kind: KeyKind, origins: Any) -> list[str]:
    """`https://host[:port]` origins, lower-cased and de-duplicated; SDK keys only."""
    if origins is None:
        return []
    if kind is not KeyKind.PUBLIC and origins:
        raise ValidationFailed({"allowedOrigins": ["Only SDK keys can be bound to origins."]})
    if not isinstance(origins, list | tuple):
        raise ValidationFailed({"allowedOrigins": ["Must be a list of origins."]})
    if len(origins) > MAX_ALLOWED_ORIGINS:
        raise ValidationFailed({"allowedOrigins": [f"At most {MAX_ALLOWED_ORIGINS} origins."]})
    cleaned: list[str] = []
    for origin in origins:
        text = origin.strip().lower() if isinstance(origin, str) else ""
        match = _ORIGIN_RE.fullmatch(text)
        if not match or (match.group("port") and not 0 < int(match.group("port")) < 65536):
            raise ValidationFailed(
                {
                    "allowedOrigins": [
                        f"Not an origin of the form https://host[:port]: {str(origin)[:100]}"
                    ]
                }
            )
        if match.group("port") == "443":
            text = f"https://{match.group('host')}"
        if text not in cleaned:
            cleaned.append(text)
    return cleaned


def kind_of(api_key: ApiKey) -> KeyKind:
    if api_key.scope == KeyScope.ORGANIZATION:
        return KeyKind.ORGANIZATION
    return KeyKind.PUBLIC if api_key.type == KeyType.PUBLIC else KeyKind.SECRET


def mint_key(
    *,
    actor: Any,
    kind: KeyKind,
    organization: Organization,
    project: Project | None = None,
    name: Any,
    permissions: Any = None,
    expires_at: datetime | None = None,
    allowed_origins: Any = None,
    replaces: ApiKey | None = None,
    request: HttpRequest | None = None,
    audit_action: str = Action.KEY_MINTED,
) -> MintedKey:
    """Mint a key of `kind` (the collection decides the kind; there is no type parameter)."""
    now = timezone.now()
    if (kind.scope == KeyScope.PROJECT) != (project is not None):
        raise ValueError("project keys need a project; organization keys must not have one")
    if project is not None and project.organization_id != organization.id:
        raise ValueError("the project belongs to another organization")
    name = clean_name(name)
    permissions = validate_permissions(kind, permissions)
    expires_at = validate_expires_at(expires_at, now)
    allowed_origins = validate_allowed_origins(kind, allowed_origins)
    throttling.enforce("mint_org", str(organization.id))
    key = keyformat.generate(kind)
    with transaction.atomic():
        api_key = ApiKey.objects.create(
            organization=organization,
            project=project,
            type=kind.key_type,
            scope=kind.scope,
            name=name,
            prefix=keyformat.display_prefix(key),
            digest=keyformat.digest(key),
            permissions=permissions,
            allowed_origins=allowed_origins,
            created_by=actor,
            created_at=now,
            expires_at=expires_at,
            replaces=replaces,
        )
        record_event(
            action=audit_action,
            organization_id=organization.id,
            project_id=project.id if project else None,
            actor_user=actor,
            target_type="key",
            target_id=api_key.id,
            target_label=api_key.prefix,
            request=request,
            details={"name": name, "kind": kind.name.lower(), "permissions": permissions}
            | ({"replaces": str(replaces.id)} if replaces else {}),
        )
    return MintedKey(api_key=api_key, key=key)


def revoke_key(
    *, actor: Any, api_key: ApiKey, request: HttpRequest | None = None, reason: str = "manual"
) -> ApiKey:
    """Revoke at once and for good. Idempotent: a second call changes nothing.

    A conditional update on `revoked_at IS NULL`, so concurrent revocations
    record one event and the first revocation time stays.
    """
    now = timezone.now()
    with transaction.atomic():
        revoked = ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(
            revoked_at=now, revoked_by=actor, revoked_reason=reason
        )
        if revoked:
            record_event(
                action=Action.KEY_REVOKED,
                organization_id=api_key.organization_id,
                project_id=api_key.project_id,
                actor_user=actor,
                target_type="key",
                target_id=api_key.id,
                target_label=api_key.prefix,
                request=request,
                details={"name": api_key.name, "reason": reason},
            )
    api_key.refresh_from_db()
    return api_key


def roll_key(
    *, actor: Any, api_key: ApiKey, grace_seconds: Any, request: HttpRequest | None = None
) -> MintedKey:
    """Mint a successor (same name, permissions, origins); the old key expires after the grace."""
    if isinstance(grace_seconds, bool) or not isinstance(grace_seconds, int):
        raise ValidationFailed({"graceSeconds": ["A whole number of seconds is required."]})
    if not 0 <= grace_seconds <= MAX_GRACE_SECONDS:
        raise ValidationFailed({"graceSeconds": [f"Between 0 and {MAX_GRACE_SECONDS}."]})
    now = timezone.now()
    if api_key.status_at(now) != KeyStatus.ACTIVE:
        raise ValidationFailed({"keyId": ["Only an active key can be rolled."]})
    kind = kind_of(api_key)
    with transaction.atomic():
        locked = ApiKey.objects.select_for_update().get(pk=api_key.pk)
        if locked.status_at(now) != KeyStatus.ACTIVE:
            raise ValidationFailed({"keyId": ["Only an active key can be rolled."]})
        minted = mint_key(
            actor=actor,
            kind=kind,
            organization=api_key.organization,
            project=api_key.project,
            name=api_key.name,
            permissions=list(api_key.permissions) if kind is not KeyKind.PUBLIC else None,
            expires_at=api_key.expires_at
            if api_key.expires_at and api_key.expires_at > now
            else None,
            allowed_origins=list(api_key.allowed_origins),
            replaces=api_key,
            request=request,
            audit_action=Action.KEY_ROLLED,
        )
        old_expiry = now + timedelta(seconds=grace_seconds)
        if locked.expires_at is None or locked.expires_at > old_expiry:
            ApiKey.objects.filter(pk=api_key.pk).update(expires_at=old_expiry)
    api_key.refresh_from_db()
    return minted


def replace_legacy_key(
    *, actor: Any, api_key: ApiKey, request: HttpRequest | None = None
) -> MintedKey:
    """Mint an `ss_secret_` key for the legacy key's project, permissions and name.

    The legacy key keeps working until someone revokes it (or the sunset).
    """
    if not api_key.legacy:
        raise ValidationFailed({"keyId": ["Only legacy keys are replaced this way."]})
    if api_key.revoked_at is not None:
        raise ValidationFailed({"keyId": ["This key was revoked."]})
    return mint_key(
        actor=actor,
        kind=KeyKind.SECRET,
        organization=api_key.organization,
        project=api_key.project,
        name=api_key.name,
        permissions=list(api_key.permissions),
        replaces=api_key,
        request=request,
    )


def set_allowed_origins(
    *, actor: Any, api_key: ApiKey, origins: Any, request: HttpRequest | None = None
) -> ApiKey:
    if kind_of(api_key) is not KeyKind.PUBLIC:
        raise ValidationFailed({"allowedOrigins": ["Only SDK keys can be bound to origins."]})
    cleaned = validate_allowed_origins(KeyKind.PUBLIC, origins)
    with transaction.atomic():
        ApiKey.objects.filter(pk=api_key.pk).update(allowed_origins=cleaned)
        record_event(
            action=Action.KEY_ORIGINS_CHANGED,
            organization_id=api_key.organization_id,
            project_id=api_key.project_id,
            actor_user=actor,
            target_type="key",
            target_id=api_key.id,
            target_label=api_key.prefix,
            request=request,
            details={"allowedOrigins": cleaned},
        )
    api_key.refresh_from_db()
    return api_key


def _candidate_digest(candidate: Any) -> str | None:
    if not isinstance(candidate, str) or len(candidate) > 512:
        return None
    candidate = candidate.strip()
    if keyformat.is_valid_key(candidate) or keyformat.is_legacy_key(candidate):
        return keyformat.digest(candidate)
    return None


@dataclass(frozen=True, slots=True)
class LeakReport:
    """What a leak report did, for the audit and tests only: the API never tells the reporter."""

    revoked: int
    flagged: int


def report_leaked_keys(
    *, candidates: Iterable[Any], request: HttpRequest | None = None
) -> LeakReport:
    """Revoke every active secret key among `candidates`; flag every active SDK key (SPEC §4.7).

    Secret, organization and legacy keys are revoked at once (GitHub-style
    public revocation), each with a `key.revoked_by_leak_report` audit event.
    SDK keys (`ss_pub_`) are public by design, so a report never revokes one:
    `flag_leaked_sdk_keys` records it for the owners instead. Strings that are
    not well-formed keys cost no query.
    """
    digests = {d for d in (_candidate_digest(c) for c in candidates) if d}
    if not digests:
        return LeakReport(revoked=0, flagged=0)
    now = timezone.now()
    ip, agent = (client_ip(request), user_agent(request)) if request is not None else (None, "")
    with transaction.atomic():
        found = list(
            ApiKey.objects.select_for_update()
            .filter(digest__in=digests, revoked_at__isnull=True)
            .only("id", "organization_id", "project_id", "prefix", "name", "type")
        )
        sdk_keys = [k for k in found if k.type == KeyType.PUBLIC]
        leaked = [k for k in found if k.type != KeyType.PUBLIC]
        if leaked:
            ApiKey.objects.filter(pk__in=[k.pk for k in leaked]).update(
                revoked_at=now, revoked_reason="leak_report"
            )
            AuditEvent.objects.bulk_create(
                _leak_report_event(
                    Action.KEY_REVOKED_BY_LEAK_REPORT, k, "revoked by leak report", ip, agent, now
                )
                for k in leaked
            )
        if sdk_keys:
            flag_leaked_sdk_keys(api_keys=sdk_keys, ip=ip, user_agent=agent, now=now)
    if leaked:
        logger.warning("leak report revoked %d key(s)", len(leaked))
    return LeakReport(revoked=len(leaked), flagged=len(sdk_keys))


def flag_leaked_sdk_keys(
    *, api_keys: Iterable[ApiKey], ip: str | None, user_agent: str, now: datetime
) -> None:
    """Record that SDK keys were reported as leaked, and leave them working.

    An SDK key lives in web pages, so anyone can find and report it: revoking
    it would let any visitor break a customer's site, again after every new
    key. The owners are told instead. Runs in the report's transaction; one
    `key.leak_reported` audit event per key. The single place a flag is
    recorded: the organization's email notification (SPEC §4.11) hooks in here.
    """
    AuditEvent.objects.bulk_create(
        _leak_report_event(
            Action.KEY_LEAK_REPORTED, k, "flagged by leak report", ip, user_agent, now
        )
        for k in api_keys
    )


def _leak_report_event(
    action: str, api_key: ApiKey, reason: str, ip: str | None, agent: str, now: datetime
) -> AuditEvent:
    return AuditEvent(
        action=action,
        organization_id=api_key.organization_id,
        project_id=api_key.project_id,
        actor_type=AuditEvent.ActorType.ANONYMOUS,
        actor_label="leak report",
        target_type="key",
        target_id=str(api_key.id),
        target_label=api_key.prefix,
        ip=ip,
        user_agent=agent,
        details={"name": api_key.name, "reason": reason},
        created_at=now,
    )


def record_key_use(
    api_key: KeyRecord | ApiKey,
    project_id: Any,
    now: datetime | None = None,
    *,
    ip: str | None = None,
    user_agent: str | None = None,
) -> None:
    """Track `lastUsedAt` with the client's IP and user agent, at most one write per key
    per 60 s, across processes.

    Called by `KeyUseMiddleware` once the response is ready. The in-memory check
    skips the write when the row read for authentication is fresh; the
    conditional UPDATE makes concurrent processes race for a single write. The
    user agent is cut to 200 characters and stored as text. A failure is logged
    and swallowed: tracking must never fail a request, nor poison a transaction.
    """
    now = now or timezone.now()
    if api_key.last_used_at is not None and now - api_key.last_used_at < LAST_USED_INTERVAL:
        return
    changes: dict[str, Any] = {
        "last_used_at": now,
        "last_used_ip": ip,
        "last_used_user_agent": (user_agent or "")[:200],
    }
    if api_key.scope == KeyScope.ORGANIZATION and project_id is not None:
        changes["last_used_project_id"] = project_id
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - LAST_USED_INTERVAL)
    try:
        if connection.in_atomic_block:
            with transaction.atomic():
                ApiKey.objects.filter(stale, pk=api_key.id).update(**changes)
        else:
            ApiKey.objects.filter(stale, pk=api_key.id).update(**changes)
    except Exception:
        logger.warning("could not record last use of key %s", api_key.id, exc_info=True)
