"""Webhooks of an organization (SPEC §4.11): owners and admins, JWT only.

* `GET/POST /v1/organizations/{orgId}/webhooks`
* `GET/DELETE /v1/organizations/{orgId}/webhooks/{webhookId}`
* `POST /v1/organizations/{orgId}/webhooks/{webhookId}/enable` (after it was disabled)
* `GET /v1/organizations/{orgId}/webhooks/{webhookId}/deliveries`

Outsiders get 404 NOT_FOUND; members and viewers 403. The secret appears only
in the creation response.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from apps.orgs.access import as_manager, membership_for, require_manager
from apps.orgs.models import Organization
from apps.webhooks import services
from apps.webhooks.models import Delivery, DeliveryStatus, EventType, Webhook
from apps.webhooks.selectors import deliveries_of, webhook_of, webhooks_of
from apps.webhooks.urlsafety import MAX_URL_LENGTH
from core.api import ManagementView, field_names, json_object, paginate
from core.openapi import PAGE_PARAMETERS, error_responses, paginated
from core.openapi_schema import IdPathAutoSchema
from core.times import iso


def webhook_json(webhook: Webhook) -> dict[str, Any]:
    return {
        "id": str(webhook.id),
        "url": webhook.url,
        "events": list(webhook.events),
        "createdAt": iso(webhook.created_at),
        "status": "enabled" if webhook.is_enabled else "disabled",
        "disabledAt": iso(webhook.disabled_at),
    }


def delivery_json(delivery: Delivery) -> dict[str, Any]:
    return {
        "eventId": str(delivery.event_id),
        "type": delivery.event.type,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "lastStatusCode": delivery.last_status_code,
        "lastAttemptAt": iso(delivery.last_attempt_at),
        "lastError": delivery.last_error or None,
        "nextAttemptAt": iso(delivery.next_attempt_at) if delivery.status == "pending" else None,
        "createdAt": iso(delivery.created_at),
    }


class WebhookSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    url = serializers.URLField()
    events = serializers.ListField(child=serializers.ChoiceField(choices=EventType.choices))
    createdAt = serializers.DateTimeField()
    status = serializers.ChoiceField(choices=["enabled", "disabled"])
    disabledAt = serializers.DateTimeField(allow_null=True)


class CreatedWebhookSerializer(WebhookSerializer):
    secret = serializers.CharField(
        help_text="`whsec_` + 32 base62 characters: the signing secret, shown this once."
    )


class CreateWebhookInputSerializer(serializers.Serializer):
    url = serializers.RegexField(
        r"^https://[^\s#]+$",
        max_length=MAX_URL_LENGTH,
        help_text=(
            "An https:// URL without user name, password or #fragment, whose host resolves to "
            "public addresses only (SSRF guard)."
        ),
    )
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=EventType.choices), min_length=1
    )


class DeliverySerializer(serializers.Serializer):
    eventId = serializers.UUIDField(help_text="The event's `id`: the same on every attempt.")
    type = serializers.ChoiceField(choices=EventType.choices)
    status = serializers.ChoiceField(choices=DeliveryStatus.choices)
    attempts = serializers.IntegerField()
    lastStatusCode = serializers.IntegerField(allow_null=True)
    lastAttemptAt = serializers.DateTimeField(allow_null=True)
    lastError = serializers.CharField(
        allow_null=True, help_text='Why there was no HTTP answer ("timeout", ...), if so.'
    )
    nextAttemptAt = serializers.DateTimeField(allow_null=True)
    createdAt = serializers.DateTimeField()


class OrgWebhookView(ManagementView):
    schema = IdPathAutoSchema()

    def managed_organization(self) -> Organization:
        return require_manager(membership_for(self.principal.user, self.kwargs["org_id"]))

    def webhook(self) -> Webhook:
        return webhook_of(self.managed_organization().id, self.kwargs["webhook_id"])


class WebhooksView(OrgWebhookView):
    @extend_schema(
        operation_id="webhooks_list",
        summary="List webhooks",
        description="Owners and admins. Newest first; the secrets are never shown again.",
        tags=["webhooks"],
        parameters=PAGE_PARAMETERS,
        responses={
            200: paginated(WebhookSerializer, "WebhookList"),
            **error_responses(400, 401, 403, 404),
        },
    )
    def get(self, request, **kwargs):
        return paginate(self, webhooks_of(self.managed_organization().id), webhook_json)

    @extend_schema(
        operation_id="webhooks_create",
        summary="Create a webhook",
        description=(
            "Owners and admins. The response carries the signing secret in `secret`: it is "
            "shown this once. Deliveries are signed `SigSentry-Signature: t=<unix>,v1=<hex "
            'HMAC-SHA256 of "<t>.<body>">`. At most 30 creations an hour per user (429 '
            "`RATE_LIMITED`), refused ones included: each resolves the URL's host."
        ),
        tags=["webhooks"],
        request=CreateWebhookInputSerializer,
        responses={201: CreatedWebhookSerializer, **error_responses(400, 401, 403, 404, 429)},
    )
    def post(self, request, **kwargs):
        organization = self.managed_organization()
        body = json_object(request, field_names(CreateWebhookInputSerializer))
        checked = services.checked_webhook_input(
            actor=self.principal.user, url=body.get("url"), events=body.get("events")
        )
        with as_manager(self.principal.user, organization.id):
            created = services.insert_webhook(
                actor=self.principal.user,
                organization=organization,
                checked=checked,
                request=request,
            )
        return Response(webhook_json(created.webhook) | {"secret": created.secret}, status=201)


class WebhookView(OrgWebhookView):
    @extend_schema(
        operation_id="webhooks_retrieve",
        summary="One webhook",
        description="Owners and admins.",
        tags=["webhooks"],
        responses={200: WebhookSerializer, **error_responses(401, 403, 404)},
    )
    def get(self, request, **kwargs):
        return Response(webhook_json(self.webhook()))

    @extend_schema(
        operation_id="webhooks_destroy",
        summary="Delete a webhook",
        description="Owners and admins. Its delivery log goes with it; nothing more is sent.",
        tags=["webhooks"],
        request=None,
        responses={204: None, **error_responses(401, 403, 404)},
    )
    def delete(self, request, **kwargs):
        webhook = self.webhook()
        with as_manager(self.principal.user, webhook.organization_id):
            services.delete_webhook(actor=self.principal.user, webhook=webhook, request=request)
        return Response(status=204)


class WebhookEnableView(OrgWebhookView):
    @extend_schema(
        operation_id="webhooks_enable",
        summary="Re-enable a disabled webhook",
        description=(
            "Owners and admins. A webhook is disabled after 100 events in a row failed; "
            "enabling it sends new events again. Enabling an enabled webhook changes nothing."
        ),
        tags=["webhooks"],
        request=None,
        responses={200: WebhookSerializer, **error_responses(401, 403, 404)},
    )
    def post(self, request, **kwargs):
        webhook = self.webhook()
        with as_manager(self.principal.user, webhook.organization_id):
            webhook = services.enable_webhook(
                actor=self.principal.user, webhook=webhook, request=request
            )
        return Response(webhook_json(webhook))


class WebhookDeliveriesView(OrgWebhookView):
    @extend_schema(
        operation_id="webhook_deliveries_list",
        summary="A webhook's deliveries",
        description="Owners and admins. Newest first: one row per event sent to this webhook.",
        tags=["webhooks"],
        parameters=PAGE_PARAMETERS,
        responses={
            200: paginated(DeliverySerializer, "DeliveryList"),
            **error_responses(400, 401, 403, 404),
        },
    )
    def get(self, request, **kwargs):
        return paginate(self, deliveries_of(self.webhook()), delivery_json)
