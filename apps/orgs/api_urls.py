from django.urls import path

from apps.orgs import api, audit_api

urlpatterns = [
    path("organizations", api.OrganizationsView.as_view(), name="api-organizations"),
    path("organizations/<str:org_id>", api.OrganizationView.as_view(), name="api-organization"),
    path(
        "organizations/<str:org_id>/projects",
        api.ProjectsView.as_view(),
        name="api-organization-projects",
    ),
    path(
        "organizations/<str:org_id>/members",
        api.MembersView.as_view(),
        name="api-organization-members",
    ),
    path(
        "organizations/<str:org_id>/members/<str:user_id>",
        api.MemberView.as_view(),
        name="api-organization-member",
    ),
    path(
        "organizations/<str:org_id>/audit-events",
        audit_api.AuditEventsView.as_view(),
        name="api-audit-events",
    ),
]
