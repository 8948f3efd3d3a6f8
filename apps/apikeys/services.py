"""Writes on API keys: mint, revoke, roll, replace, update (name and guardrails), last
use. Leak reports are in `leaks`.

Invariant: the plaintext key exists only in the `MintedKey` these functions
return; the row holds its SHA-256 digest and display prefix, nothing more.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone

from apps.apikeys import guardrails, keyformat
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey, KeyScope, KeyStatus, KeyType
from apps.apikeys.representation import key_json
from apps.apikeys.selectors import KeyRecord
from apps.apikeys.validators import (
    clean_key_name,
    validate_expires_at,
    validate_grace_seconds,
    validate_permissions,
)
from apps.audit.services import Action, record_event
from apps.orgs.models import Organization
from apps.projects.models import Project
from apps.webhooks.models import EventType
from apps.webhooks.services import KeyEvent, record_key_events
from core import throttling
from core.errors import ValidationFailed
from core.net import readable_agent
from core.queries import refuse_when_full
from core.times import iso
from core.validation import FieldErrors, check_fields

logger = logging.getLogger("sigsentry.apikeys")

LAST_USED_INTERVAL = timedelta(seconds=60)
#: Active keys (neither revoked nor expired) an organization holds, all kinds together: a
#: mint past it is refused until one is revoked. `mint_org` allows 86,400 mints a day, and
#: every active key is in the scheduled expiry and unused-key checks, the usage counters
#: and the key lists. Twice the largest collection the tests model (10,000 keys in one
#: project). Revoked and expired keys stay for good (SPEC §2.1) and do not count; a roll
#: or a legacy key's replacement does not count the key it replaces.
MAX_ACTIVE_KEYS_PER_ORGANIZATION = 20_000

#: The latest instant Python's datetime holds.
_LATEST = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class MintedKey:
    api_key: ApiKey
    key: str  # shown once, never stored


def key_event(event_type: str, api_key: ApiKey, now: datetime | None = None) -> KeyEvent:
    """A webhook event about `api_key`, carrying the key object of SPEC §4.3 (never the key)."""
    return KeyEvent(event_type, api_key.organization_id, key_json(api_key, now or timezone.now()))


def record_key_updated(*, api_key: ApiKey) -> None:
    """The `key.updated` event; call it inside the transaction that changed the key."""
    api_key.refresh_from_db()
    record_key_events([key_event(EventType.KEY_UPDATED, api_key)])


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
    rate_limit: Any = None,
    allowed_ips: Any = None,
    project_ids: Any = None,
    replaces: ApiKey | None = None,
    request: HttpRequest | None = None,
    audit_action: str = Action.KEY_MINTED,
    audit_details: dict[str, Any] | None = None,
    errors: FieldErrors | None = None,
) -> MintedKey:
    """Mint a key of `kind` (the collection decides the kind; there is no type parameter).

    Every invalid field is reported at once (VALIDATION_ERROR, `details.fields`), with
    those a caller already found (`errors`: a roll's `graceSeconds`); the guardrails
    follow `apps.apikeys.guardrails`, and a secret or org key must expire within its
    organization's `keyMaxLifetimeDays`.
    """
    now = timezone.now()
    if (kind.scope == KeyScope.PROJECT) != (project is not None):
        raise ValueError("project keys need a project; organization keys must not have one")
    if project is not None and project.organization_id != organization.id:
        raise ValueError("the project belongs to another organization")
    errors = FieldErrors() if errors is None else errors
    name = errors.check(clean_key_name, name)
    permissions = errors.check(validate_permissions, kind, permissions)
    expires_at = errors.check(validate_expires_at, expires_at, now)
    if not errors.failed("expiresAt"):
        errors.check(guardrails.validate_lifetime, kind, organization, expires_at, now)
    allowed_origins = errors.check(guardrails.validate_allowed_origins, kind, allowed_origins)
    limit = errors.check(guardrails.validate_rate_limit, rate_limit)
    allowed_ips = errors.check(guardrails.validate_allowed_ips, kind, allowed_ips)
    project_ids = errors.check(guardrails.validate_project_ids, kind, organization, project_ids)
    errors.raise_any()
    throttling.enforce("mint_org", str(organization.id))
    if actor is not None:  # every mint of the dashboard and the API has one
        throttling.enforce("mint_user", str(actor.pk))
    key = keyformat.generate(kind)
    with transaction.atomic():
        refuse_when_full(
            Organization.objects.filter(pk=organization.pk),
            _active_keys(organization, now, besides=replaces),
            MAX_ACTIVE_KEYS_PER_ORGANIZATION,
            "name",
            f"At most {MAX_ACTIVE_KEYS_PER_ORGANIZATION:,} active keys per organization: "
            "revoke the keys nothing uses first.",
        )
        if kind is not KeyKind.PUBLIC:
            # The policy again, under the lock `set_key_lifetime_policy` takes: one set since
            # the check above has committed (and refuses this key) or waits for this mint.
            # NO KEY: rows that merely refer to the organization are not held up.
            organization.refresh_from_db(
                fields=["key_max_lifetime_days"],
                from_queryset=Organization.objects.select_for_update(no_key=True),
            )
            guardrails.validate_lifetime(kind, organization, expires_at, now)
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
            rate_limit_requests=limit[0] if limit else None,
            rate_limit_seconds=limit[1] if limit else None,
            allowed_ips=allowed_ips,
            project_ids=project_ids,
            created_by=actor,
            created_by_email=actor.email if actor is not None else "",
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
            | ({"expiresAt": iso(expires_at)} if expires_at else {})
            | _guardrail_values(api_key)
            | _replaced(replaces)
            | _previous_permissions(replaces, permissions)
            | (audit_details or {}),
        )
        rolled = audit_action == Action.KEY_ROLLED
        event_type = EventType.KEY_ROLLED if rolled else EventType.KEY_MINTED
        record_key_events([key_event(event_type, api_key, now)])
    return MintedKey(api_key=api_key, key=key)


def _active_keys(organization: Organization, now: datetime, *, besides: ApiKey | None):
    """The organization's keys neither revoked nor expired at `now` but `besides` (the key
    a roll replaces), on the index `apikeys_org_unrevoked`: the revoked ones, kept for
    good, are not read."""
    active = ApiKey.objects.filter(organization=organization, revoked_at__isnull=True).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    )
    return active if besides is None else active.exclude(pk=besides.pk)


def _replaced(replaces: ApiKey | None) -> dict[str, Any]:
    """The key a roll or replacement succeeds, by id and prefix: its event's log line names
    it (`sigsentry.audit`), as it comes back to life if a restore drops the successor."""
    if replaces is None:
        return {}
    return {"replaces": str(replaces.id), "replacesPrefix": replaces.prefix}


def _previous_permissions(replaces: ApiKey | None, permissions: list[str]) -> dict[str, Any]:
    """The replaced key's permissions when its successor's differ (a roll may change them)."""
    if replaces is None or list(replaces.permissions) == permissions:
        return {}
    return {"previousPermissions": list(replaces.permissions)}


def _guardrail_values(api_key: ApiKey) -> dict[str, Any]:
    """The key's guardrails that are set, as the API names them (for audit details)."""
    values = {
        "rateLimit": api_key.rate_limit,
        "allowedIps": list(api_key.allowed_ips),
        "projectIds": list(api_key.project_ids),
        "allowedOrigins": list(api_key.allowed_origins),
    }
    return {field: value for field, value in values.items() if value}


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
            record_key_events([key_event(EventType.KEY_REVOKED, api_key, now)])
    api_key.refresh_from_db()
    return api_key


#: `roll_key`'s default for a field: the old key's (for the expiry, its lifetime from now).
INHERIT = object()


def successor_expiry(api_key: ApiKey, organization: Organization, now: datetime) -> datetime | None:
    """A successor's expiry unless another is given (`roll_key`, the dashboard's roll form):
    as long from now as the old key was given at its mint, none when it had none, at most
    what `organization`'s lifetime policy allows a secret or org key."""
    lifetime = api_key.expires_at and api_key.expires_at - api_key.created_at
    # a "never" spelled 9999-12-31 stays the latest instant, never past year 9999
    expires_at = now + min(lifetime, _LATEST - now) if lifetime else None
    latest = guardrails.latest_expiry(organization, now)
    if expires_at is not None and latest is not None and kind_of(api_key) is not KeyKind.PUBLIC:
        expires_at = min(expires_at, latest)  # no expiry stays none: refused (SPEC §4.10)
    return expires_at


def roll_key(
    *,
    actor: Any,
    api_key: ApiKey,
    grace_seconds: Any,
    expires_at: Any = INHERIT,
    allowed_origins: Any = INHERIT,
    permissions: Any = INHERIT,
    request: HttpRequest | None = None,
) -> MintedKey:
    """Mint a successor (same name, permissions, origins and guardrails); the old key
    expires after the grace.

    The successor's `expires_at` is the one given (None: no expiry), by default as long
    from now as the old key was given at its mint (none when it had none), at most what
    the organization's lifetime policy allows: the successor of a key about to expire,
    rolled as the expiry emails advise, must not die with it (it did when it took the old
    key's moment), and a key minted for longer before a policy is rolled into one that
    fits it. A secret or org key's must fit its
    organization's lifetime policy, as at mint. An SDK key's `allowed_origins` may be
    set at roll (SPEC §4.7), validated as at mint; by default the old key's. So may
    `permissions`: a key's own never change (SPEC §4.10), its successor's may, validated
    exactly as at mint (an SDK key's: only the locked set). A key has one successor: a
    second roll (a retry, a second tab) is a VALIDATION_ERROR on `keyId`. A refused roll
    changes nothing, the old key's expiry included. Its invalid fields are reported at once.
    """
    errors = FieldErrors()
    grace_seconds = errors.check(validate_grace_seconds, grace_seconds)
    now = timezone.now()
    if api_key.status_at(now) != KeyStatus.ACTIVE:
        raise ValidationFailed({"keyId": ["Only an active key can be rolled."]})
    kind = kind_of(api_key)
    if expires_at is INHERIT:
        expires_at = successor_expiry(api_key, api_key.organization, now)
    with transaction.atomic():
        locked = _locked_without_successor(api_key, now, "rolled")
        old_expiry = _expiry_after_grace(locked, now, grace_seconds)
        if permissions is INHERIT:  # an SDK key's: the locked set, whatever the row holds
            permissions = list(locked.permissions) if kind is not KeyKind.PUBLIC else None
        minted = mint_key(
            actor=actor,
            kind=kind,
            organization=api_key.organization,
            project=api_key.project,
            name=locked.name,
            permissions=permissions,
            expires_at=expires_at,
            allowed_origins=(
                list(locked.allowed_origins) if allowed_origins is INHERIT else allowed_origins
            ),
            rate_limit=locked.rate_limit,
            allowed_ips=list(locked.allowed_ips),
            project_ids=list(locked.project_ids),
            replaces=api_key,
            request=request,
            audit_action=Action.KEY_ROLLED,
            # what the roll did to the old key too (a threat-model audit: a roll with no
            # grace that broke a deploy recorded who, not what)
            audit_details={
                "graceSeconds": grace_seconds,
                "replacedKeyExpiresAt": iso(old_expiry),
            },
            errors=errors,
        )
        ApiKey.objects.filter(pk=api_key.pk).update(expires_at=old_expiry)
    api_key.refresh_from_db()
    return minted


def _expiry_after_grace(old: ApiKey, now: datetime, grace_seconds: int | None) -> datetime | None:
    """When a rolled key stops working: after the grace, or sooner if it expired sooner."""
    if grace_seconds is None:  # refused: the roll's mint reports it
        return old.expires_at
    after_grace = now + timedelta(seconds=grace_seconds)
    return after_grace if old.expires_at is None else min(old.expires_at, after_grace)


def _locked_without_successor(api_key: ApiKey, now: datetime, verb: str) -> ApiKey:
    """The key's row, locked, if it is active and has no successor yet; else VALIDATION_ERROR
    on `keyId`. One successor per key: a retried or double-submitted roll or replace would
    otherwise mint a second live key (a rolled one's would also die with the grace).

    Its organization's row is locked first (NO KEY, as the mint does after), the order of
    every writer of an organization: the admin's delete locks it, then its keys, and a
    roll locking the key first could deadlock with it (found by a review)."""
    Organization.objects.select_for_update(no_key=True).filter(pk=api_key.organization_id).exists()
    locked = ApiKey.objects.select_for_update().get(pk=api_key.pk)
    if locked.status_at(now) != KeyStatus.ACTIVE:
        raise ValidationFailed({"keyId": [f"Only an active key can be {verb}."]})
    if ApiKey.objects.filter(replaces_id=locked.pk).exists():
        raise ValidationFailed(
            {"keyId": ["This key already has a successor: roll or revoke that one instead."]}
        )
    return locked


def replace_legacy_key(
    *, actor: Any, api_key: ApiKey, request: HttpRequest | None = None
) -> MintedKey:
    """Mint an `ss_secret_` key for the legacy key's project, permissions, name and
    guardrails (its rate limit and allowed IPs, as a roll keeps them: the replacement
    worked from any address, unlimited, found by a threat-model audit).

    The legacy key keeps working until someone revokes it (or the sunset). Under an
    organization lifetime policy the new key gets the longest expiry it allows. Only an
    active legacy key without a successor (rolled or replaced before) is replaced.
    """
    if not api_key.legacy:
        raise ValidationFailed({"keyId": ["Only legacy keys are replaced this way."]})
    now = timezone.now()
    with transaction.atomic():
        locked = _locked_without_successor(api_key, now, "replaced")
        return mint_key(
            actor=actor,
            kind=KeyKind.SECRET,
            organization=api_key.organization,
            project=api_key.project,
            name=locked.name,
            permissions=list(locked.permissions),
            expires_at=guardrails.latest_expiry(api_key.organization, now),
            rate_limit=locked.rate_limit,
            allowed_ips=list(locked.allowed_ips),
            replaces=api_key,
            request=request,
        )


#: What `PATCH <collection>/{keyId}` may change (SPEC §4.10); permissions never change.
UPDATABLE_FIELDS = ("name", "rateLimit", "allowedIps", "allowedOrigins", "projectIds")


def _key_values(api_key: ApiKey) -> dict[str, Any]:
    return {
        "name": api_key.name,
        "rateLimit": api_key.rate_limit,
        "allowedIps": list(api_key.allowed_ips),
        "allowedOrigins": list(api_key.allowed_origins),
        "projectIds": list(api_key.project_ids),
    }


def update_key(
    *, actor: Any, api_key: ApiKey, changes: dict[str, Any], request: HttpRequest | None = None
) -> ApiKey:
    """Change a key's name and guardrails; in force from the next request on every process.

    `changes` maps API field names (`UPDATABLE_FIELDS`) to their new values; fields not
    named keep their values. `permissions` or any other field is a VALIDATION_ERROR (a
    misspelled one names the field it resembles: `core.validation.check_fields`), as
    is a revoked or expired key (a dead key has nothing left to guard). Nothing about a
    key is cached, so the authentication of the next request reads the new values.
    Records `key.updated` with the changed fields and their values before and after;
    a change to nothing records nothing. Throttled per organization and per user as
    mints are (`key_update_org`, `key_update_user`): each change is a webhook event.
    """
    if not isinstance(changes, dict) or not changes:
        raise ValidationFailed({"body": [f"Send at least one of: {', '.join(UPDATABLE_FIELDS)}."]})
    errors = FieldErrors()
    if "permissions" in changes:
        errors.fields["permissions"] = [
            "Permissions never change: roll the key to give its successor other permissions."
        ]
    others = {field: value for field, value in changes.items() if field != "permissions"}
    errors.check(check_fields, others, UPDATABLE_FIELDS)
    errors.raise_any()
    kind = kind_of(api_key)
    cleaned: dict[str, Any] = {}
    if "name" in changes:
        cleaned["name"] = errors.check(clean_key_name, changes["name"])
    if "rateLimit" in changes:
        limit = errors.check(guardrails.validate_rate_limit, changes["rateLimit"])
        cleaned["rateLimit"] = guardrails.rate_limit_json(limit)
    if "allowedIps" in changes:
        cleaned["allowedIps"] = errors.check(
            guardrails.validate_allowed_ips, kind, changes["allowedIps"]
        )
    if "allowedOrigins" in changes:
        cleaned["allowedOrigins"] = errors.check(
            guardrails.validate_allowed_origins, kind, changes["allowedOrigins"]
        )
    if "projectIds" in changes:
        cleaned["projectIds"] = errors.check(
            guardrails.validate_project_ids, kind, api_key.organization, changes["projectIds"]
        )
    errors.raise_any()
    throttling.enforce("key_update_org", str(api_key.organization_id))
    if actor is not None:
        throttling.enforce("key_update_user", str(actor.pk))
    with transaction.atomic():
        locked = ApiKey.objects.select_for_update().get(pk=api_key.pk)
        if locked.status_at(timezone.now()) != KeyStatus.ACTIVE:
            raise ValidationFailed({"keyId": ["Only an active key can be changed."]})
        before = _key_values(locked)
        changed = [field for field in UPDATABLE_FIELDS if field in cleaned]
        changed = [field for field in changed if not _same(field, cleaned[field], before[field])]
        if changed:
            limit = cleaned.get("rateLimit", before["rateLimit"])
            ApiKey.objects.filter(pk=locked.pk).update(
                name=cleaned.get("name", locked.name),
                rate_limit_requests=limit["requests"] if limit else None,
                rate_limit_seconds=limit["perSeconds"] if limit else None,
                allowed_ips=cleaned.get("allowedIps", locked.allowed_ips),
                allowed_origins=cleaned.get("allowedOrigins", locked.allowed_origins),
                project_ids=cleaned.get("projectIds", locked.project_ids),
            )
            record_event(
                action=Action.KEY_UPDATED,
                organization_id=locked.organization_id,
                project_id=locked.project_id,
                actor_user=actor,
                target_type="key",
                target_id=locked.id,
                target_label=locked.prefix,
                request=request,
                details={
                    "fields": changed,
                    "before": {field: before[field] for field in changed},
                    "after": {field: cleaned[field] for field in changed},
                },
            )
            record_key_updated(api_key=locked)  # the webhook event, in this transaction
    api_key.refresh_from_db()
    return api_key


#: Fields whose lists are sets: another order is no change (an audit: the Edit limits
#: dialog, saved unchanged, posted projects in name order and recorded `key.updated`).
UNORDERED_FIELDS = frozenset({"allowedIps", "allowedOrigins", "projectIds"})


def _same(field: str, new: Any, old: Any) -> bool:
    if field in UNORDERED_FIELDS and new is not None and old is not None:
        return sorted(map(str, new)) == sorted(map(str, old))
    return new == old


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
    user agent is stored readable (`core.net.readable_agent`), cut to 200 characters.
    A failure is logged and swallowed: tracking must never fail a request, nor poison a
    transaction.
    """
    now = now or timezone.now()
    if api_key.last_used_at is not None and now - api_key.last_used_at < LAST_USED_INTERVAL:
        return
    changes: dict[str, Any] = {
        "last_used_at": now,
        "last_used_ip": ip,
        "last_used_user_agent": readable_agent(user_agent)[:200],
    }
    if api_key.scope == KeyScope.ORGANIZATION and project_id is not None:
        changes["last_used_project_id"] = project_id
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - LAST_USED_INTERVAL)
    try:
        # in a transaction: a savepoint keeps it usable
        with nullcontext() if transaction.get_autocommit() else transaction.atomic():
            ApiKey.objects.filter(stale, pk=api_key.id).update(**changes)
    except Exception:
        logger.warning("could not record last use of key %s", api_key.id, exc_info=True)
