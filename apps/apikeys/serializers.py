"""The key object of SPEC §4.3 in the API: request and response shapes.

Responses are built by `representation.key_json`, which never holds the
plaintext key: only the mint and roll responses add `key`, from the
`MintedKey` the service returned (`minted_key_json`). The serializer classes
below describe the same shapes for the OpenAPI document (tests check the two
agree).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.apikeys.guardrails import (
    MAX_ALLOWED_IPS,
    MAX_ALLOWED_ORIGINS,
    MAX_PROJECT_IDS,
    ORIGIN_PATTERN,
)
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import KeyScope, KeyStatus, KeyType
from apps.apikeys.representation import key_json
from apps.apikeys.validators import MAX_GRACE_SECONDS
from core.openapi import request_keywords
from core.permissions import ALL_PERMISSIONS, SDK_LOCKED_PERMISSIONS
from core.validation import MAX_NAME_LENGTH

if TYPE_CHECKING:
    from apps.apikeys.services import MintedKey


def minted_key_json(minted: MintedKey, now: datetime) -> dict[str, Any]:
    """The mint/roll response: the key object plus the full key, shown this once."""
    return key_json(minted.api_key, now) | {"key": minted.key}


class KeyCreatorSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    email = serializers.EmailField()


@request_keywords(additionalProperties=False)
class RateLimitSerializer(serializers.Serializer):
    """At most `requests` requests with the key succeed in any `perSeconds`-second window."""

    requests = serializers.IntegerField(min_value=1, max_value=100_000)
    perSeconds = serializers.IntegerField(min_value=1, max_value=86_400)


class KeySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    type = serializers.ChoiceField(choices=KeyType.choices)
    scope = serializers.ChoiceField(choices=KeyScope.choices)
    prefix = serializers.CharField(help_text="The type prefix and the next 8 characters.")
    permissions = serializers.ListField(child=serializers.ChoiceField(choices=ALL_PERMISSIONS))
    status = serializers.ChoiceField(choices=KeyStatus.choices)
    legacy = serializers.BooleanField()
    createdAt = serializers.DateTimeField()
    createdBy = KeyCreatorSerializer(allow_null=True)
    expiresAt = serializers.DateTimeField(allow_null=True)
    lastUsedAt = serializers.DateTimeField(allow_null=True)
    revokedAt = serializers.DateTimeField(allow_null=True)
    allowedOrigins = serializers.ListField(child=serializers.CharField())
    allowedIps = serializers.ListField(
        child=serializers.CharField(), help_text="CIDRs; empty means any client IP."
    )
    rateLimit = RateLimitSerializer(allow_null=True)
    lastUsedIp = serializers.IPAddressField(allow_null=True)
    lastUsedUserAgent = serializers.CharField(allow_null=True, help_text="First 200 characters.")
    lastUsedProjectId = serializers.UUIDField(
        allow_null=True, required=False, help_text="Organization keys only."
    )
    projectIds = serializers.ListField(
        child=serializers.UUIDField(),
        required=False,
        help_text="Organization keys only: the projects it is confined to; empty means all.",
    )


class MintedKeySerializer(serializers.Serializer):
    """A key object plus `key`; documented as `allOf: [Key, {key}]` (apps.apikeys.schema)."""


_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"

# Request bodies, one per collection (SPEC §4.3, §4.10): each documents what its kind of
# key takes. A guardrail of another kind is listed as an empty list (`maxItems: 0`): the
# API accepts it empty or null, the defaults, and refuses a value (VALIDATION_ERROR).

#: A CIDR or an address, IPv4 or IPv6, as `guardrails.normalize_network` reads it.
_NETWORK_SCHEMA = {
    "type": "string",
    # Each branch typed too: a generator reads a branch alone (an SDK audit: `list[Any]`).
    "anyOf": [
        {"type": "string", "format": "ipv4"},
        {"type": "string", "format": "ipv6"},
        {"type": "string", "pattern": rf"^{_OCTET}(\.{_OCTET}){{3}}/(3[0-2]|[12]?[0-9])$"},
        {
            "type": "string",
            "pattern": r"^[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*/(12[0-8]|1[01][0-9]|[1-9]?[0-9])$",
        },
    ],
}


@extend_schema_field(_NETWORK_SCHEMA)
class NetworkField(serializers.CharField):
    """One `allowedIps` entry."""


@extend_schema_field(
    {
        "type": "array",
        "items": {"type": "string", "enum": list(SDK_LOCKED_PERMISSIONS)},
        "minItems": len(SDK_LOCKED_PERMISSIONS),
        "maxItems": len(SDK_LOCKED_PERMISSIONS),
        "uniqueItems": True,
    }
)
class LockedPermissionsField(serializers.ListField):
    """An SDK key's permissions: exactly the locked set, in any order."""


def _name(**kwargs) -> serializers.RegexField:
    return serializers.RegexField(
        r"\S",
        max_length=MAX_NAME_LENGTH,
        help_text=(
            f"1 to {MAX_NAME_LENGTH} characters once stripped; "
            "no control, invisible or text-direction characters."
        ),
        **kwargs,
    )


def _expires_at(help_text: str) -> serializers.DateTimeField:
    return serializers.DateTimeField(allow_null=True, required=False, help_text=help_text)


def _rate_limit() -> RateLimitSerializer:
    return RateLimitSerializer(
        allow_null=True,
        required=False,
        help_text="The key's own rate limit, across every server process; null for none.",
    )


def _allowed_origins(help_text: str = "") -> serializers.ListField:
    return serializers.ListField(
        child=serializers.RegexField(rf"^{ORIGIN_PATTERN}$"),
        max_length=MAX_ALLOWED_ORIGINS,
        required=False,
        help_text=(
            "`https://host[:port]` origins the key is bound to (stored lower-cased, without "
            "`:443`); a request with another `Origin` is 403 ORIGIN_NOT_ALLOWED. Empty means "
            "any origin." + help_text
        ),
    )


def _allowed_ips() -> serializers.ListField:
    return serializers.ListField(
        child=NetworkField(max_length=64),
        max_length=MAX_ALLOWED_IPS,
        required=False,
        help_text=(
            "CIDRs or addresses, IPv4 or IPv6, stored normalized (`203.0.113.7` → "
            "`203.0.113.7/32`). A request from any other client IP is 403 IP_NOT_ALLOWED. "
            "Empty means any IP."
        ),
    )


def _project_ids() -> serializers.ListField:
    return serializers.ListField(
        child=serializers.UUIDField(),
        max_length=MAX_PROJECT_IDS,
        required=False,
        help_text=(
            "Projects of the key's organization it is confined to (any other X-Project-Id is "
            "403 PROJECT_MISMATCH); another organization's project is a VALIDATION_ERROR. "
            "Empty means every project."
        ),
    )


def _not_for_this_kind(reason: str) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.CharField(),
        max_length=0,
        allow_null=True,
        required=False,
        help_text=f"{reason} Omit it, or send it empty.",
    )


_NO_IPS = "SDK keys run in browsers, which have no fixed IP: bind them to origins instead."
_NO_ORIGINS = "Only SDK keys are bound to origins."
_NO_PROJECTS = "Only organization keys are confined to projects."


def _permissions(**kwargs) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.ChoiceField(choices=ALL_PERMISSIONS), min_length=1, **kwargs
    )


def _locked_permissions(help_text: str) -> LockedPermissionsField:
    return LockedPermissionsField(
        child=serializers.CharField(),
        required=False,
        help_text=help_text + " Omit it, or send exactly `analysis:create` and `analysis:read` "
        "(anything else: PERMISSIONS_LOCKED).",
    )


_NEVER = (
    "A future time with `Z` or an offset (one without a zone is refused, not read as "
    "UTC), or null (the default: never)."
)
_INHERITED_EXPIRY = (
    "The successor's (null: never). Omitted: as long from now as the old key was given at "
    "its mint (none when it had none)."
)
_POLICY = (
    " Under the organization's `keyMaxLifetimeDays` one within it is required (else "
    "VALIDATION_ERROR)."
)


class MintSdkKeyInputSerializer(serializers.Serializer):
    """`POST /v1/projects/{projectId}/sdk-keys`."""

    name = _name()
    permissions = _locked_permissions("The SDK key's locked permissions.")
    expiresAt = _expires_at(_NEVER)
    allowedOrigins = _allowed_origins()
    rateLimit = _rate_limit()
    allowedIps = _not_for_this_kind(_NO_IPS)
    projectIds = _not_for_this_kind(_NO_PROJECTS)


class MintSecretKeyInputSerializer(serializers.Serializer):
    """`POST /v1/projects/{projectId}/api-keys`."""

    name = _name()
    permissions = _permissions(help_text="At least one permission.")
    expiresAt = _expires_at(_NEVER + _POLICY)
    rateLimit = _rate_limit()
    allowedIps = _allowed_ips()
    allowedOrigins = _not_for_this_kind(_NO_ORIGINS)
    projectIds = _not_for_this_kind(_NO_PROJECTS)


class MintOrganizationKeyInputSerializer(MintSecretKeyInputSerializer):
    """`POST /v1/organizations/{orgId}/api-keys`."""

    projectIds = _project_ids()


class UpdateKeyInputSerializer(serializers.Serializer):
    """What every `PATCH <collection>/{keyId}` body takes; any of the fields, nothing else.
    Fields not sent keep their values. Permissions never change: roll the key."""

    name = _name(required=False)
    rateLimit = _rate_limit()


class UpdateSdkKeyInputSerializer(UpdateKeyInputSerializer):
    """`PATCH /v1/projects/{projectId}/sdk-keys/{keyId}`: any of these, nothing else;
    fields not sent keep their values. Permissions never change: roll the key."""

    allowedOrigins = _allowed_origins()
    allowedIps = _not_for_this_kind(_NO_IPS)
    projectIds = _not_for_this_kind(_NO_PROJECTS)


class UpdateSecretKeyInputSerializer(UpdateKeyInputSerializer):
    """`PATCH /v1/projects/{projectId}/api-keys/{keyId}`: any of these, nothing else;
    fields not sent keep their values. Permissions never change: roll the key."""

    allowedIps = _allowed_ips()
    allowedOrigins = _not_for_this_kind(_NO_ORIGINS)
    projectIds = _not_for_this_kind(_NO_PROJECTS)


class UpdateOrganizationKeyInputSerializer(UpdateSecretKeyInputSerializer):
    """`PATCH /v1/organizations/{orgId}/api-keys/{keyId}`: any of these, nothing else;
    fields not sent keep their values. Permissions never change: roll the key."""

    projectIds = _project_ids()


class RollSdkKeyInputSerializer(serializers.Serializer):
    """`POST /v1/projects/{projectId}/sdk-keys/{keyId}/roll`: the successor keeps the
    key's name, guardrails and (unless sent) origins, and the old key's lifetime."""

    graceSeconds = serializers.IntegerField(
        min_value=0,
        max_value=MAX_GRACE_SECONDS,
        help_text="How long the old key keeps working (its new `expiresAt` is now + grace).",
    )
    expiresAt = _expires_at(_INHERITED_EXPIRY)
    allowedOrigins = _allowed_origins(" Omitted: the old key's.")
    permissions = _locked_permissions("The successor's.")


class RollSecretKeyInputSerializer(RollSdkKeyInputSerializer):
    """`POST /v1/projects/{projectId}/api-keys/{keyId}/roll`: the successor keeps the
    key's name, guardrails and (unless sent) permissions, and the old key's lifetime."""

    expiresAt = _expires_at(_INHERITED_EXPIRY + " Capped by the organization's policy." + _POLICY)
    allowedOrigins = _not_for_this_kind(_NO_ORIGINS)
    permissions = _permissions(
        required=False,
        help_text="The successor's, validated as at mint. Omitted: the old key's (which "
        "never change).",
    )


class RollOrganizationKeyInputSerializer(RollSecretKeyInputSerializer):
    """`POST /v1/organizations/{orgId}/api-keys/{keyId}/roll`: the successor keeps the
    key's name, guardrails and (unless sent) permissions, and the old key's lifetime."""


#: Each collection's request bodies, by the kind of key its URL names.
MINT_INPUTS = {
    KeyKind.PUBLIC: MintSdkKeyInputSerializer,
    KeyKind.SECRET: MintSecretKeyInputSerializer,
    KeyKind.ORGANIZATION: MintOrganizationKeyInputSerializer,
}
UPDATE_INPUTS = {
    KeyKind.PUBLIC: UpdateSdkKeyInputSerializer,
    KeyKind.SECRET: UpdateSecretKeyInputSerializer,
    KeyKind.ORGANIZATION: UpdateOrganizationKeyInputSerializer,
}
ROLL_INPUTS = {
    KeyKind.PUBLIC: RollSdkKeyInputSerializer,
    KeyKind.SECRET: RollSecretKeyInputSerializer,
    KeyKind.ORGANIZATION: RollOrganizationKeyInputSerializer,
}


class LeakReportInputSerializer(serializers.Serializer):
    keys = serializers.ListField(child=serializers.CharField(), max_length=100)


class LeakReportResponseSerializer(serializers.Serializer):
    received = serializers.IntegerField(help_text="How many strings were received.")
