"""The rules of a key's guardrails (SPEC §4.10), shared by the API and the dashboard.

Each function takes the value as a client sent it and returns what is stored, or
raises VALIDATION_ERROR naming the SPEC field (`details.fields.<camelCase>`):

* `validate_rate_limit`: `{"requests": 1..100000, "perSeconds": 1..86400}` or null.
* `validate_allowed_ips`: at most 50 CIDRs or addresses, IPv4 or IPv6, stored as
  `ipaddress.ip_network(strict=False)` writes them (`203.0.113.7` → `203.0.113.7/32`,
  `10.1.2.3/8` → `10.0.0.0/8`, IPv4-mapped IPv6 as IPv4, since authentication
  compares a mapped client address as IPv4). Secret and org keys only.
* `validate_project_ids`: projects of the key's own organization; org keys only.
* `validate_lifetime`: the organization's `keyMaxLifetimeDays` for secret and org keys.
* `validate_allowed_origins`: at most 20 `https://host[:port]` origins; SDK keys only.

A field that does not apply to a kind of key may be sent empty (`[]` or null, the
defaults); a value is a VALIDATION_ERROR.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.db.models import DateTimeField, ExpressionWrapper, F, Q, QuerySet
from django.template.defaultfilters import pluralize

from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey, KeyType, active_at
from apps.orgs.models import Organization
from apps.projects.models import Project
from core.errors import ValidationFailed
from core.validation import as_sent

MAX_RATE_LIMIT_REQUESTS = 100_000
MAX_RATE_LIMIT_SECONDS = 86_400
MAX_ALLOWED_IPS = 50
MAX_PROJECT_IDS = 100
MAX_ALLOWED_ORIGINS = 20
#: An allowed origin as stored (host, then a port from 1 to 65535): Python's `re` and
#: ECMA 262 read it alike, so the OpenAPI document states this very pattern (no named
#: groups: ECMA spells them otherwise).
ORIGIN_PATTERN = (
    r"https://([a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?)*)"
    r"(?::([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?"
)
_ORIGIN_RE = re.compile(ORIGIN_PATTERN)

_MAPPED_V4 = ipaddress.ip_network("::ffff:0:0/96")


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_rate_limit(value: Any) -> tuple[int, int] | None:
    """(requests, per seconds), or None for no limit."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"requests", "perSeconds"}:
        raise ValidationFailed(
            {"rateLimit": ['An object {"requests": n, "perSeconds": s}, or null.']}
        )
    requests, seconds = value["requests"], value["perSeconds"]
    messages = []
    if not _whole(requests) or not 1 <= requests <= MAX_RATE_LIMIT_REQUESTS:
        messages.append(f"requests: a whole number from 1 to {MAX_RATE_LIMIT_REQUESTS}.")
    if not _whole(seconds) or not 1 <= seconds <= MAX_RATE_LIMIT_SECONDS:
        messages.append(f"perSeconds: a whole number from 1 to {MAX_RATE_LIMIT_SECONDS}.")
    if messages:
        raise ValidationFailed({"rateLimit": messages})
    return requests, seconds


def rate_limit_json(limit: tuple[int, int] | None) -> dict | None:
    return None if limit is None else {"requests": limit[0], "perSeconds": limit[1]}


def normalize_network(text: str) -> str:
    """One allowlist entry as stored; ValueError when it is not a CIDR or an address."""
    if "%" in text:  # an IPv6 zone names an interface of the client's host, not an address
        raise ValueError(text)
    network = ipaddress.ip_network(text.strip(), strict=False)
    if network.version == 6 and network.subnet_of(_MAPPED_V4):
        mapped = network.network_address.ipv4_mapped
        network = ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}")
    return str(network)


def validate_allowed_ips(kind: KeyKind, value: Any) -> list[str]:
    """Normalized CIDRs, de-duplicated in the order given; empty means any client IP."""
    if value is None or value == []:
        return []
    if kind is KeyKind.PUBLIC:
        raise ValidationFailed(
            {
                "allowedIps": [
                    "SDK keys run in browsers, which have no fixed IP address: "
                    "bind them to origins (allowedOrigins) instead."
                ]
            }
        )
    if not isinstance(value, list):
        raise ValidationFailed({"allowedIps": ["A list of CIDRs or IP addresses."]})
    if len(value) > MAX_ALLOWED_IPS:
        raise ValidationFailed({"allowedIps": [f"At most {MAX_ALLOWED_IPS} entries."]})
    cleaned: list[str] = []
    bad: list[str] = []
    for entry in value:
        try:
            if not isinstance(entry, str) or len(entry) > 64:
                raise ValueError(entry)
            network = normalize_network(entry)
        except ValueError:
            bad.append(f"Not a CIDR or IP address: {as_sent(entry, 64)}")
            continue
        if network not in cleaned:
            cleaned.append(network)
    if bad:
        raise ValidationFailed({"allowedIps": bad})
    return cleaned


def validate_project_ids(kind: KeyKind, organization: Organization, value: Any) -> list[str]:
    """Ids of projects of `organization` (canonical UUID text, de-duplicated, in the order
    given); empty means every project of the organization. One query."""
    if value is None or value == []:
        return []
    if kind is not KeyKind.ORGANIZATION:
        raise ValidationFailed(
            {"projectIds": ["Only organization keys can be confined to projects."]}
        )
    if not isinstance(value, list):
        raise ValidationFailed({"projectIds": ["A list of project ids."]})
    if len(value) > MAX_PROJECT_IDS:
        raise ValidationFailed({"projectIds": [f"At most {MAX_PROJECT_IDS} projects."]})
    ids: list[str] = []
    for entry in value:
        try:
            text = str(uuid.UUID(entry)) if isinstance(entry, str) else None
        except ValueError:
            text = None
        if text is None:
            raise ValidationFailed({"projectIds": [f"Not a project id: {as_sent(entry, 64)}"]})
        if text not in ids:
            ids.append(text)
    found = {
        str(pk)
        for pk in Project.objects.filter(organization_id=organization.id, id__in=ids).values_list(
            "id", flat=True
        )
    }
    # A project of another organization reads the same as one that does not exist.
    missing = [pid for pid in ids if pid not in found]
    if missing:
        raise ValidationFailed(
            {"projectIds": [f"No project {pid} in this organization." for pid in missing]}
        )
    return ids


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
        if not match:
            raise ValidationFailed(
                {
                    "allowedOrigins": [
                        f"Not an origin of the form https://host[:port]: {as_sent(origin, 100)}"
                    ]
                }
            )
        host, port = match.groups()
        if port == "443":
            text = f"https://{host}"
        if text not in cleaned:
            cleaned.append(text)
    return cleaned


def latest_expiry(organization: Organization, now: datetime) -> datetime | None:
    """The latest `expiresAt` the organization's policy allows for a key minted `now`."""
    days = organization.key_max_lifetime_days
    return None if days is None else now + timedelta(days=days)


def validate_lifetime(
    kind: KeyKind, organization: Organization, expires_at: datetime | None, now: datetime
) -> None:
    """Secret and org keys minted or rolled must expire within the organization's policy
    (SPEC §4.10); SDK keys are public by design and exempt."""
    latest = latest_expiry(organization, now)
    if kind is KeyKind.PUBLIC or latest is None:
        return
    days = organization.key_max_lifetime_days
    within = f"{days} day{pluralize(days)}"
    if expires_at is None:
        raise ValidationFailed(
            {
                "expiresAt": [
                    f"This organization requires keys to expire within {within}: give an expiry."
                ]
            }
        )
    if expires_at > latest:
        raise ValidationFailed(
            {
                "expiresAt": [
                    f"This organization requires keys to expire within {within} "
                    f"(no later than {latest:%Y-%m-%d %H:%M:%S} UTC)."
                ]
            }
        )


def exceeds_lifetime(
    expires_at: datetime | None, organization: Organization, created_at: datetime
) -> bool:
    """Whether an existing key outlives the policy (minted before it, or before a stricter one)."""
    latest = latest_expiry(organization, created_at)
    return latest is not None and (expires_at is None or expires_at > latest)


def keys_outliving_policy(organization: Organization, now: datetime) -> QuerySet[ApiKey]:
    """The organization's active secret and org keys that live longer than its policy
    allows (no expiry, or one further from their creation than `keyMaxLifetimeDays`):
    minted before the policy, so an owner can roll them. Empty without a policy."""
    days = organization.key_max_lifetime_days
    if days is None:
        return ApiKey.objects.none()
    longest = ExpressionWrapper(
        F("created_at") + timedelta(days=days), output_field=DateTimeField()
    )
    return (
        ApiKey.objects.filter(organization_id=organization.id, type=KeyType.SECRET)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=longest))
        .filter(active_at(now))
        .select_related("project")
        .order_by("created_at", "id")
    )


_WINDOW_NAMES = {1: "second", 60: "minute", 3600: "hour", 86_400: "day"}


def rate_limit_label(requests: int, seconds: int) -> str:
    """A rate limit for people: `5 / minute`, `100 / 10 s`, `1000 / 6 h`."""
    if seconds in _WINDOW_NAMES:
        window = _WINDOW_NAMES[seconds]
    elif seconds % 3600 == 0:
        window = f"{seconds // 3600} h"
    elif seconds % 60 == 0:
        window = f"{seconds // 60} min"
    else:
        window = f"{seconds} s"
    return f"{requests} / {window}"


def key_rate_label(api_key: ApiKey) -> str:
    """`rate_limit_label` of a key's limit; empty without one."""
    if api_key.rate_limit_requests is None:
        return ""
    return rate_limit_label(api_key.rate_limit_requests, api_key.rate_limit_seconds)


def project_labels(project_ids: list[str], names: dict[str, str]) -> list[str]:
    """The names of an org key's projects (`names`: a project's id as text → its name),
    in the key's order; "a deleted project" for one gone."""
    return [names.get(str(project_id), "a deleted project") for project_id in project_ids]
