"""Invitations (SPEC §4.13): people only (API keys get 403 KEY_MANAGEMENT_FORBIDDEN).

Listing, inviting and cancelling need owner or admin of the organization
(outsiders get 404); accepting needs the invitee's own session.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from apps.accounts.api import OrganizationRefSerializer
from apps.invitations import selectors, services
from apps.invitations.models import Invitation
from apps.orgs.access import membership_for, require_manager
from core.api import ManagementView, field_names, json_object, paginate
from core.openapi import PAGE_PARAMETERS, error_responses, paginated
from core.openapi_schema import IdPathAutoSchema
from core.permissions import Role
from core.times import iso


def invitation_json(invitation: Invitation) -> dict[str, Any]:
    inviter = invitation.invited_by
    return {
        "id": str(invitation.id),
        "email": invitation.email,
        "role": invitation.role,
        "expiresAt": iso(invitation.expires_at),
        "createdAt": iso(invitation.created_at),
        "invitedBy": {"id": str(inviter.id), "email": inviter.email} if inviter else None,
    }


class InviterSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    email = serializers.EmailField()


class InvitationSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    email = serializers.CharField(help_text="As the inviter typed it; the email goes there.")
    role = serializers.ChoiceField(choices=Role.choices)
    expiresAt = serializers.DateTimeField(help_text="Seven days after it was sent.")
    createdAt = serializers.DateTimeField()
    invitedBy = InviterSerializer(allow_null=True)


class InvitationInputSerializer(serializers.Serializer):
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=Role.choices)


class AcceptedInvitationSerializer(serializers.Serializer):
    organization = OrganizationRefSerializer()
    role = serializers.ChoiceField(choices=Role.choices, help_text="The caller's role now.")


class InvitationManagementView(ManagementView):
    schema = IdPathAutoSchema()


class InvitationsView(InvitationManagementView):
    @extend_schema(
        operation_id="invitations_list",
        summary="Pending invitations of an organization",
        description="Owners and admins. Not yet accepted, cancelled or expired; newest first.",
        tags=["organizations"],
        parameters=PAGE_PARAMETERS,
        responses={
            200: paginated(InvitationSerializer, "InvitationList"),
            **error_responses(400, 401, 403, 404),
        },
    )
    def get(self, request, org_id):
        membership = membership_for(self.principal.user, org_id)
        require_manager(membership)
        return paginate(self, selectors.pending_invitations(membership), invitation_json)

    @extend_schema(
        operation_id="invitations_create",
        summary="Invite someone by email",
        description=(
            "Owners and admins; only owners invite owners. The same answer whether or not an "
            "account uses the email; the email carries a link to `/invitations/<token>/`, "
            "valid 7 days, single use (opened in a browser, it keeps its token in an HttpOnly "
            "cookie and redirects to `/invitations/open/`, so the token leaves the address "
            "bar). Inviting an address again replaces its pending "
            "invitation. Throttled per organization and per inviter."
        ),
        tags=["organizations"],
        request=InvitationInputSerializer,
        responses={201: InvitationSerializer, **error_responses(400, 401, 403, 404, 429)},
    )
    def post(self, request, org_id):
        membership = membership_for(self.principal.user, org_id)
        require_manager(membership)
        body = json_object(request, field_names(InvitationInputSerializer))
        invitation = services.invite_member(
            actor_membership=membership,
            email=body.get("email"),
            role=body.get("role"),
            request=request,
        )
        return Response(invitation_json(invitation), status=201)


class InvitationView(InvitationManagementView):
    @extend_schema(
        operation_id="invitations_cancel",
        summary="Cancel a pending invitation",
        description="Owners and admins. Its link stops working at once.",
        tags=["organizations"],
        responses={
            204: OpenApiResponse(description="Cancelled."),
            **error_responses(401, 403, 404),
        },
    )
    def delete(self, request, org_id, invitation_id):
        membership = membership_for(self.principal.user, org_id)
        require_manager(membership)
        services.cancel_invitation(
            actor_membership=membership, invitation_id=invitation_id, request=request
        )
        return Response(status=204)


class InvitationAcceptView(InvitationManagementView):
    @extend_schema(
        operation_id="invitations_accept",
        summary="Accept an invitation",
        description=(
            "With the session of the invited person: their normalized email must be the "
            "invited one. Anyone else, and an expired, cancelled or used invitation, gets "
            "404 NOT_FOUND. Accepting again answers the same."
        ),
        tags=["organizations"],
        request=None,
        responses={200: AcceptedInvitationSerializer, **error_responses(401, 403, 404)},
    )
    def post(self, request, token):
        membership = services.accept_invitation(
            user=self.principal.user, token=token, request=request
        )
        organization = membership.organization
        return Response(
            {
                "organization": {"id": str(organization.id), "name": organization.name},
                "role": membership.role,
            }
        )
