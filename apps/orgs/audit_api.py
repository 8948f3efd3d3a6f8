"""The audit log of an organization (SPEC §4.7): owners and admins, read-only.

There is no write, update or delete endpoint: other methods answer 405, and
no code path outside apps.audit.services touches an event.

Besides SPEC §4.7's fields each event carries `details` (what the dashboard's audit log
shows): §4.10 has `key.updated` name the changed fields, and only `details` holds them.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers

from apps.audit.models import AuditEvent
from apps.audit.services import Action
from apps.orgs.access import membership_for, require_manager
from apps.orgs.selectors import events_of
from core.api import ManagementView, paginate
from core.errors import ValidationFailed
from core.openapi import PAGE_PARAMETERS, error_responses, paginated
from core.openapi_schema import IdPathAutoSchema
from core.times import iso


def actor_json(event: AuditEvent) -> dict[str, Any]:
    """Who acted, from the snapshot taken when the event was written."""
    if event.actor_type == AuditEvent.ActorType.USER:
        user_id = event.actor_user_id
        actor = {"type": "user", "id": str(user_id) if user_id else None}
        if event.actor_label:  # none once the account was deleted (`forget_account`)
            actor["email"] = event.actor_label
        return actor
    if event.actor_type == AuditEvent.ActorType.KEY:
        key_id = event.actor_key_id
        return {"type": "key", "id": str(key_id) if key_id else None, "prefix": event.actor_label}
    return {"type": str(event.actor_type)}


def event_json(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": str(event.id),
        "action": event.action,
        "actor": actor_json(event),
        "target": (
            {"type": event.target_type, "id": event.target_id or None, "label": event.target_label}
            if event.target_type
            else None
        ),
        "projectId": str(event.project_id) if event.project_id else None,
        "ip": event.shown_ip,
        "createdAt": iso(event.created_at),
        "details": event.details or {},
    }


class AuditActorSerializer(serializers.Serializer):
    type = serializers.CharField(help_text='"user", "key", "anonymous" or "system".')
    id = serializers.UUIDField(
        required=False, allow_null=True, help_text="Users and keys; null once deleted."
    )
    email = serializers.EmailField(
        required=False, help_text="Users only; absent once the account was deleted."
    )
    prefix = serializers.CharField(required=False, help_text="Keys only.")


class AuditTargetSerializer(serializers.Serializer):
    type = serializers.CharField(
        help_text='"key", "user", "project", "organization", "webhook", "invitation" or '
        '"legacy_keys".'
    )
    id = serializers.CharField(allow_null=True)
    label = serializers.CharField(
        help_text="An email, key prefix or name, a webhook's host, or how many legacy keys were "
        "imported; never a secret."
    )


class AuditEventSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    action = serializers.CharField(help_text=f"One of: {', '.join(Action.ALL)}.")
    actor = AuditActorSerializer()
    target = AuditTargetSerializer(allow_null=True)
    projectId = serializers.UUIDField(allow_null=True)
    ip = serializers.IPAddressField(allow_null=True)
    createdAt = serializers.DateTimeField()
    details = serializers.DictField(
        help_text=(
            "What the event changed, by action: `key.updated` and `organization.updated` "
            "name the changed `fields` with their `before` and `after` values; `key.minted` "
            "the name, kind and permissions; a revocation its reason; `{}` when there is "
            "nothing more to say. Never a secret."
        )
    )


class AuditEventsView(ManagementView):
    schema = IdPathAutoSchema()

    @extend_schema(
        operation_id="audit_events_list",
        summary="The organization's audit events",
        description="Owners and admins. Newest first. Read-only: events cannot be changed.",
        tags=["audit"],
        parameters=[
            *PAGE_PARAMETERS,
            OpenApiParameter(
                "action",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                enum=list(Action.ALL),
                description="Only events of this action.",
            ),
        ],
        responses={
            200: paginated(AuditEventSerializer, "AuditEventList"),
            **error_responses(400, 401, 403, 404),
        },
    )
    def get(self, request, org_id):
        membership = membership_for(self.principal.user, org_id)
        require_manager(membership)
        action = request.query_params.get("action")
        if action is not None and action not in Action.ALL:
            raise ValidationFailed({"action": [f"One of: {', '.join(Action.ALL)}."]})
        return paginate(self, events_of(membership, action=action), event_json)
