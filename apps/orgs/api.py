"""Organizations, projects and members (SPEC §4.2). People only: API keys get 403.

Every organization path resolves the caller's membership first
(`membership_for`: 404 NOT_FOUND for outsiders), then writes need owner or
admin (`require_manager`), then the services apply the role rules (admins
never touch owners; an organization keeps one owner).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from apps.orgs import selectors, services
from apps.orgs.access import as_manager, membership_for, require_manager
from apps.orgs.models import Membership
from apps.orgs.serializers import UserRefSerializer
from apps.projects import selectors as project_selectors
from apps.projects import services as project_services
from apps.projects.models import Project
from core.api import ManagementView, field_names, json_object, paginate
from core.openapi import PAGE_PARAMETERS, error_responses, paginated, request_keywords
from core.openapi_schema import IdPathAutoSchema
from core.permissions import Role
from core.times import iso


def organization_json(membership: Membership) -> dict[str, Any]:
    organization = membership.organization
    return {
        "id": str(organization.id),
        "name": organization.name,
        "role": membership.role,
        "keyMaxLifetimeDays": organization.key_max_lifetime_days,
    }


def project_json(project: Project) -> dict[str, Any]:
    return {
        "id": str(project.id),
        "name": project.name,
        "organizationId": str(project.organization_id),
        "createdAt": iso(project.created_at),
    }


def member_json(membership: Membership) -> dict[str, Any]:
    user = membership.user
    return {"user": {"id": str(user.id), "email": user.email}, "role": membership.role}


# OpenAPI shapes of the request and response bodies.


class OrganizationSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    role = serializers.ChoiceField(choices=Role.choices, help_text="The caller's role.")
    keyMaxLifetimeDays = serializers.IntegerField(
        allow_null=True,
        min_value=services.MIN_KEY_LIFETIME_DAYS,
        max_value=services.MAX_KEY_LIFETIME_DAYS,
        help_text=(
            "Key lifetime policy: secret and organization keys minted or rolled must "
            "expire within this many days. Null: no policy."
        ),
    )


@request_keywords(required=["keyMaxLifetimeDays"])  # a PATCH body, which the schema calls partial
class OrganizationUpdateInputSerializer(serializers.Serializer):
    keyMaxLifetimeDays = serializers.IntegerField(
        allow_null=True,
        min_value=services.MIN_KEY_LIFETIME_DAYS,
        max_value=services.MAX_KEY_LIFETIME_DAYS,
        help_text="1 to 3650 days, or null to lift the policy. Existing keys are not touched.",
    )


class NameInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)


class ProjectSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    organizationId = serializers.UUIDField()
    createdAt = serializers.DateTimeField()


class MemberSerializer(serializers.Serializer):
    user = UserRefSerializer()
    role = serializers.ChoiceField(choices=Role.choices)


class MemberAddInputSerializer(serializers.Serializer):
    email = serializers.EmailField(help_text="An existing user (404 NOT_FOUND otherwise).")
    role = serializers.ChoiceField(choices=Role.choices)


@request_keywords(required=["role"])  # a PATCH body, which the schema calls partial
class MemberRoleInputSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)


class OrgManagementView(ManagementView):
    """People only; `*_id` path variables documented as UUIDs."""

    schema = IdPathAutoSchema()


class OrganizationsView(OrgManagementView):
    @extend_schema(
        operation_id="organizations_list",
        summary="The caller's organizations",
        description="By name.",
        tags=["organizations"],
        parameters=PAGE_PARAMETERS,
        responses={
            200: paginated(OrganizationSerializer, "OrganizationList"),
            **error_responses(400, 401, 403),
        },
    )
    def get(self, request):
        memberships = selectors.memberships_of(self.principal.user)
        return paginate(
            self, memberships, organization_json, ordering=selectors.BY_ORGANIZATION_NAME
        )

    @extend_schema(
        operation_id="organizations_create",
        summary="Create an organization",
        description=(
            "The caller becomes its owner. At most 20 a day per user (429 RATE_LIMITED), and "
            f"none once the caller is in {services.MAX_ORGANIZATIONS_PER_USER:,} organizations "
            "(400 VALIDATION_ERROR on `name`)."
        ),
        tags=["organizations"],
        request=NameInputSerializer,
        responses={201: OrganizationSerializer, **error_responses(400, 401, 403, 429)},
    )
    def post(self, request):
        body = json_object(request, field_names(NameInputSerializer))
        organization = services.create_organization(
            actor=self.principal.user, name=body.get("name"), request=request
        )
        return Response(
            organization_json(Membership(organization=organization, role=Role.OWNER)),
            status=201,
        )


class OrganizationView(OrgManagementView):
    @extend_schema(
        operation_id="organizations_update",
        summary="Set the organization's key lifetime policy",
        description=(
            "Owners only (admins and members: 403 PERMISSION_DENIED). With "
            "`keyMaxLifetimeDays` set, minting or rolling a secret or organization key needs "
            "an `expiresAt` no later than now + that many days (400 VALIDATION_ERROR, "
            "`details.fields.expiresAt`); SDK keys and existing keys are not affected. "
            "Audited as `organization.updated`."
        ),
        tags=["organizations"],
        request=OrganizationUpdateInputSerializer,
        responses={200: OrganizationSerializer, **error_responses(400, 401, 403, 404)},
    )
    def patch(self, request, org_id):
        membership = membership_for(self.principal.user, org_id)
        services.require_owner(membership)
        body = json_object(request, field_names(OrganizationUpdateInputSerializer))
        services.set_key_lifetime_policy(
            actor_membership=membership, days=body["keyMaxLifetimeDays"], request=request
        )
        return Response(organization_json(membership))


class ProjectsView(OrgManagementView):
    @extend_schema(
        operation_id="projects_list",
        summary="Projects of an organization",
        parameters=PAGE_PARAMETERS,
        description="Any member. Newest first.",
        tags=["organizations"],
        responses={
            200: paginated(ProjectSerializer, "ProjectList"),
            **error_responses(400, 401, 403, 404),
        },
    )
    def get(self, request, org_id):
        membership = membership_for(self.principal.user, org_id)
        return paginate(self, project_selectors.projects_of(membership), project_json)

    @extend_schema(
        operation_id="projects_create",
        summary="Create a project",
        description=(
            "Owners and admins. At most "
            f"{project_services.MAX_PROJECTS_PER_ORGANIZATION:,} per organization "
            "(400 VALIDATION_ERROR on `name`); throttled per user (429 RATE_LIMITED)."
        ),
        tags=["organizations"],
        request=NameInputSerializer,
        responses={201: ProjectSerializer, **error_responses(400, 401, 403, 404, 429)},
    )
    def post(self, request, org_id):
        membership = membership_for(self.principal.user, org_id)
        organization = require_manager(membership)
        body = json_object(request, field_names(NameInputSerializer))
        with as_manager(self.principal.user, organization.id):
            project = project_services.create_project(
                actor=self.principal.user,
                organization=organization,
                name=body.get("name"),
                request=request,
            )
        return Response(project_json(project), status=201)


class MembersView(OrgManagementView):
    @extend_schema(
        operation_id="members_list",
        summary="Members of an organization",
        description="Any member. By email.",
        tags=["organizations"],
        parameters=PAGE_PARAMETERS,
        responses={
            200: paginated(MemberSerializer, "MemberList"),
            **error_responses(400, 401, 403, 404),
        },
    )
    def get(self, request, org_id):
        membership = membership_for(self.principal.user, org_id)
        members = selectors.members_of(membership)
        return paginate(self, members, member_json, ordering=selectors.BY_EMAIL)

    @extend_schema(
        operation_id="members_add",
        summary="Add a member",
        description="Owners and admins; only owners add owners. The user must already exist.",
        tags=["organizations"],
        request=MemberAddInputSerializer,
        responses={201: MemberSerializer, **error_responses(400, 401, 403, 404)},
    )
    def post(self, request, org_id):
        membership = membership_for(self.principal.user, org_id)
        require_manager(membership)
        body = json_object(request, field_names(MemberAddInputSerializer))
        added = services.add_member(
            actor_membership=membership,
            email=body.get("email"),
            role=body.get("role"),
            request=request,
        )
        return Response(member_json(added), status=201)


class MemberView(OrgManagementView):
    @extend_schema(
        operation_id="members_update",
        summary="Change a member's role",
        description=(
            "Owners and admins; admins cannot change owners or make owners. Demoting the "
            "last owner whose account is active is 409 LAST_OWNER."
        ),
        tags=["organizations"],
        request=MemberRoleInputSerializer,
        responses={200: MemberSerializer, **error_responses(400, 401, 403, 404, 409)},
    )
    def patch(self, request, org_id, user_id):
        membership = membership_for(self.principal.user, org_id)
        require_manager(membership)
        target = selectors.member_of(membership, user_id)
        body = json_object(request, field_names(MemberRoleInputSerializer))
        changed = services.change_member_role(
            actor_membership=membership,
            target=target,
            role=body.get("role"),
            request=request,
        )
        return Response(member_json(changed))

    @extend_schema(
        operation_id="members_remove",
        summary="Remove a member",
        description=(
            "Owners and admins; admins cannot remove owners. Removing the last owner whose "
            "account is active is 409 LAST_OWNER."
        ),
        tags=["organizations"],
        responses={
            204: OpenApiResponse(description="Removed."),
            **error_responses(401, 403, 404, 409),
        },
    )
    def delete(self, request, org_id, user_id):
        membership = membership_for(self.principal.user, org_id)
        require_manager(membership)
        target = selectors.member_of(membership, user_id)
        services.remove_member(actor_membership=membership, target=target, request=request)
        return Response(status=204)
