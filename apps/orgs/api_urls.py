from django.urls import path

from apps.orgs import api, audit_api, config_api

#: The project configuration's endpoints, which API keys call: early in /v1's list.
config_urlpatterns = [
    path("config", config_api.ConfigView.as_view(), name="api-config"),
    path(
        "config/log-sources", config_api.LogSourceCollectionView.as_view(), name="api-log-sources"
    ),
    path(
        "config/log-sources/<str:log_source_id>",
        config_api.LogSourceDetailView.as_view(),
        name="api-log-source",
    ),
    path("config/channels", config_api.ChannelCollectionView.as_view(), name="api-channels"),
    path(
        "config/channels/<str:channel_id>",
        config_api.ChannelDetailView.as_view(),
        name="api-channel",
    ),
]

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
