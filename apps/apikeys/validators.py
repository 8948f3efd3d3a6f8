"""The base fields of a key as mint, roll and update take them (SPEC §4.3, §4.7):
permissions, expiry and a roll's grace. The guardrails' rules are in `guardrails`.

Each function takes the value as a client (the API's JSON or a dashboard form) sent
it and returns what is stored, or raises the SPEC error naming the field.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone

from apps.apikeys.keyformat import KeyKind, holds_a_key
from core.errors import PermissionsLocked, ValidationFailed
from core.permissions import ALL_PERMISSIONS, SDK_LOCKED_PERMISSIONS, normalize_permissions
from core.validation import as_sent, clean_name

MAX_GRACE_SECONDS = 7 * 24 * 3600


def clean_key_name(value: Any) -> str:
    """A key's name (`clean_name`), without a key in it: a name is shown to every member and
    sent in the audit log, webhooks and emails, none of which may carry a key (an audit-log
    audit: a key pasted into a name stayed in its audit events for good)."""
    name = clean_name(value)
    if holds_a_key(name):
        raise ValidationFailed(
            {
                "name": [
                    "A name cannot hold an API key: it is shown to every member and sent in "
                    "webhooks and emails."
                ]
            }
        )
    return name


def validate_permissions(kind: KeyKind, permissions: Any) -> list[str]:
    """The key's permissions in canonical order. None: not given (an SDK key gets the
    locked set, other kinds have no default); an SDK key takes nothing but the locked set
    (PERMISSIONS_LOCKED), other kinds a non-empty list of known permissions."""
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
            {"permissions": [f"Unknown permission: {as_sent(p, 40)}" for p in unknown]}
        )
    return normalize_permissions(permissions)


def parse_expires_at(value: Any) -> datetime | None:
    """`expiresAt` as a JSON body sends it: an ISO 8601 time with a time zone, or null."""
    if value is None:
        return None
    message = "An ISO 8601 time with a time zone (for example 2030-01-31T12:00:00Z), or null."
    if not isinstance(value, str) or len(value) > 64:
        raise ValidationFailed({"expiresAt": [message]})
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise ValidationFailed({"expiresAt": [_not_a_time(value.strip()) or message]}) from exc
    if moment.tzinfo is None:
        raise ValidationFailed({"expiresAt": ["Give a time zone (for example ...Z)."]})
    try:
        return moment.astimezone(UTC)
    except OverflowError as exc:  # 9999-12-31T23:59:59-14:00 is past the last representable time
        raise ValidationFailed({"expiresAt": [message]}) from exc


#: A time as ISO 8601 writes it, whatever its numbers: `2030-02-30T12:00:00Z` is one.
_TIME_SHAPE = re.compile(
    r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:(?P<second>\d\d))?(\.\d+)?(Z|[+-]\d\d:?\d\d)?"
)


def _not_a_time(value: str) -> str | None:
    """Why a value written as an ISO 8601 time names none, or None for other text: the
    general message told someone who sent a leap second to send ISO 8601 (a dates audit)."""
    shape = _TIME_SHAPE.fullmatch(value)
    if shape is None:
        return None
    if shape["second"] == "60":
        return "A leap second (:60) is not a time here: give :59, or the next minute."
    return f"No such date or time: {as_sent(value, 40)}."


def validate_expires_at(expires_at: Any, now: datetime) -> datetime | None:
    """A future, zone-aware time: a datetime (the dashboard's forms), or the API's ISO 8601
    text, parsed here so that a bad one is reported with the other fields' errors."""
    if not isinstance(expires_at, datetime):
        expires_at = parse_expires_at(expires_at)
    if expires_at is None:
        return None
    if timezone.is_naive(expires_at):
        raise ValidationFailed({"expiresAt": ["Give a time zone (for example ...Z)."]})
    if expires_at <= now:
        # The time now, in the zone the value was read in: someone in UTC-8 who meant 09:00
        # their time, at 05:00 there, saw "in the future" refused with no hint why.
        raise ValidationFailed(
            {"expiresAt": [f"Must be in the future: it is now {now:%-d %b %Y, %H:%M} UTC."]}
        )
    return expires_at


def validate_grace_seconds(grace_seconds: Any) -> int:
    """How long a rolled key keeps working: whole seconds, 0 to a week."""
    if isinstance(grace_seconds, bool) or not isinstance(grace_seconds, int):
        raise ValidationFailed({"graceSeconds": ["A whole number of seconds is required."]})
    if not 0 <= grace_seconds <= MAX_GRACE_SECONDS:
        raise ValidationFailed({"graceSeconds": [f"Between 0 and {MAX_GRACE_SECONDS}."]})
    return grace_seconds
