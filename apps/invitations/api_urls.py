from django.urls import path

from apps.invitations import api

urlpatterns = [
    path(
        "organizations/<str:org_id>/invitations",
        api.InvitationsView.as_view(),
        name="api-organization-invitations",
    ),
    path(
        "organizations/<str:org_id>/invitations/<str:invitation_id>",
        api.InvitationView.as_view(),
        name="api-organization-invitation",
    ),
    path(
        "invitations/<str:token>/accept",
        api.InvitationAcceptView.as_view(),
        name="api-invitation-accept",
    ),
]
