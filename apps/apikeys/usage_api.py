"""`GET <collection>/{keyId}/usage?granularity=hour|day` (SPEC §4.9).

Any member of the key's organization may read a key's usage (as they may list
keys); API keys get KEY_MANAGEMENT_FORBIDDEN, outsiders the collection's 404,
and a key of another collection NOT_FOUND — the order of every key endpoint
(`apps.apikeys.api`). The granularity is checked last, so a bad parameter
tells an outsider nothing.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from apps.apikeys.api import KeyManagementView
from apps.apikeys.models import Granularity
from apps.apikeys.usage.answer import key_usage
from core.errors import ValidationFailed
from core.openapi import error_responses
from core.openapi_schema import IdPathAutoSchema
from core.times import iso


def usage_json(usage: dict[str, Any]) -> dict[str, Any]:
    """`key_usage`'s answer with ids as text and times as ISO 8601 UTC."""
    return {
        "keyId": str(usage["keyId"]),
        "granularity": usage["granularity"],
        "series": [bucket | {"start": iso(bucket["start"])} for bucket in usage["series"]],
        "total": usage["total"],
        "recentIps": [ip | {"lastSeenAt": iso(ip["lastSeenAt"])} for ip in usage["recentIps"]],
    }


def parse_granularity(value: str | None) -> str:
    if value is None:
        return Granularity.HOUR
    if value not in Granularity.values:
        raise ValidationFailed({"granularity": ["Use hour (the default) or day."]})
    return value


class UsageBucketSerializer(serializers.Serializer):
    start = serializers.DateTimeField(help_text="Start of the UTC hour or day.")
    requests = serializers.IntegerField(
        help_text="Requests that presented the key and were identified, refused ones included."
    )
    refused = serializers.IntegerField(
        help_text="Requests refused by authentication or authorization (revoked, expired, "
        "origin, IP, rate limit, permission)."
    )


class UsageTotalSerializer(serializers.Serializer):
    requests = serializers.IntegerField()
    refused = serializers.IntegerField()


class RecentIpSerializer(serializers.Serializer):
    ip = serializers.IPAddressField(help_text="The client IP (per NUM_PROXIES).")
    lastSeenAt = serializers.DateTimeField()
    requests = serializers.IntegerField()


class KeyUsageSerializer(serializers.Serializer):
    keyId = serializers.UUIDField()
    granularity = serializers.ChoiceField(choices=Granularity.choices)
    series = UsageBucketSerializer(
        many=True,
        help_text="Oldest first, zero buckets included: 48 hours or 90 days, the current one last.",
    )
    total = UsageTotalSerializer(help_text="The sums over `series`.")
    recentIps = RecentIpSerializer(
        many=True, help_text="The 5 most recently seen distinct client IPs, newest first."
    )


class UsageAutoSchema(IdPathAutoSchema):
    """One resource, not a list: named for it (`projects_api_keys_usage`)."""

    def get_operation_id(self):
        return AutoSchema.get_operation_id(self).removesuffix("_retrieve")


class KeyUsageView(KeyManagementView):
    schema = UsageAutoSchema()

    @extend_schema(
        summary="A key's usage",
        description=(
            "Any member of the organization. Requests and refusals per UTC hour (the last 48 "
            "hours) or day (the last 90 days), their totals and the key's recent client IPs. "
            "Exact across every server process and current within 2 seconds."
        ),
        tags=["keys"],
        parameters=[
            OpenApiParameter(
                "granularity",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                enum=Granularity.values,
                default=Granularity.HOUR.value,
                description="`hour`: the last 48 hours; `day`: the last 90 days.",
            )
        ],
        responses={200: KeyUsageSerializer, **error_responses(400, 401, 403, 404)},
    )
    def get(self, request, key_id, **kwargs):
        api_key = self.collection().key(key_id)
        granularity = parse_granularity(request.query_params.get("granularity"))
        return Response(usage_json(key_usage(api_key, granularity)))
