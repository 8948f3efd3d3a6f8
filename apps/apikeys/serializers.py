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

from rest_framework import serializers

from apps.apikeys.models import KeyScope, KeyStatus, KeyType
from apps.apikeys.representation import key_json
from core.permissions import ALL_PERMISSIONS

if TYPE_CHECKING:
    from apps.apikeys.services import MintedKey


def minted_key_json(minted: MintedKey, now: datetime) -> dict[str, Any]:
    """The mint/roll response: the key object plus the full key, shown this once."""
    return key_json(minted.api_key, now) | {"key": minted.key}


class KeyCreatorSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    email = serializers.EmailField()


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


def _allowed_ips_field(**kwargs) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.CharField(max_length=64),
        max_length=50,
        help_text=(
            "Secret and organization keys: CIDRs or addresses, IPv4 or IPv6 (at most 50), "
            "stored normalized (`203.0.113.7` → `203.0.113.7/32`). A request from any "
            "other client IP is 403 IP_NOT_ALLOWED. Empty means any IP. On an SDK key a "
            "non-empty list is a VALIDATION_ERROR."
        ),
        **kwargs,
    )


def _project_ids_field(**kwargs) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.UUIDField(),
        max_length=100,
        help_text=(
            "Organization keys: projects of the key's organization it is confined to "
            "(any other X-Project-Id is 403 PROJECT_MISMATCH). Empty means every project. "
            "On other keys, or with another organization's project: VALIDATION_ERROR."
        ),
        **kwargs,
    )


def _allowed_origins_field(**kwargs) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.CharField(),
        help_text="SDK keys only: `https://host[:port]` origins; empty means any origin.",
        **kwargs,
    )


def _rate_limit_field(**kwargs) -> RateLimitSerializer:
    return RateLimitSerializer(
        allow_null=True,
        help_text="The key's own rate limit, across every server process; null for none.",
        **kwargs,
    )


def _permissions_field(help_text: str) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.ChoiceField(choices=ALL_PERMISSIONS), required=False, help_text=help_text
    )


class MintKeyInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    permissions = _permissions_field(
        "A non-empty list of permissions. SDK keys: omit it or send exactly "
        "`analysis:create` and `analysis:read` (anything else: PERMISSIONS_LOCKED)."
    )
    expiresAt = serializers.DateTimeField(
        allow_null=True,
        required=False,
        help_text=(
            "A future time with a time zone, or null. Under the organization's "
            "`keyMaxLifetimeDays`, secret and organization keys need one within it."
        ),
    )
    allowedOrigins = _allowed_origins_field(required=False)
    rateLimit = _rate_limit_field(required=False)
    allowedIps = _allowed_ips_field(required=False)
    projectIds = _project_ids_field(required=False)


class UpdateKeyInputSerializer(serializers.Serializer):
    """`PATCH <collection>/{keyId}`: any of these; permissions never change (roll instead)."""

    name = serializers.CharField(max_length=100, required=False)
    rateLimit = _rate_limit_field(required=False)
    allowedIps = _allowed_ips_field(required=False)
    allowedOrigins = _allowed_origins_field(required=False)
    projectIds = _project_ids_field(required=False)


class RollKeyInputSerializer(serializers.Serializer):
    graceSeconds = serializers.IntegerField(
        min_value=0,
        max_value=604800,
        help_text="How long the old key keeps working (its new `expiresAt` is now + grace).",
    )
    expiresAt = serializers.DateTimeField(
        allow_null=True,
        required=False,
        help_text=(
            "When the new key expires (null: never). Omitted: when the old key would have. "
            "Under the organization's `keyMaxLifetimeDays`, secret and organization keys "
            "need one within it."
        ),
    )
    allowedOrigins = _allowed_origins_field(required=False)
    permissions = _permissions_field(
        "The new key's permissions, validated as at mint (SDK keys: exactly "
        "`analysis:create` and `analysis:read`, anything else PERMISSIONS_LOCKED). "
        "Omitted: the old key's. The old key's own permissions never change."
    )


class LeakReportInputSerializer(serializers.Serializer):
    keys = serializers.ListField(child=serializers.CharField(), max_length=100)


class LeakReportResponseSerializer(serializers.Serializer):
    received = serializers.IntegerField(help_text="How many strings were received.")
