from django.urls import path

from apps.invitations import views

urlpatterns = [
    path("orgs/<uuid:org_id>/invitations/", views.invite, name="invitation-create"),
    path(
        "orgs/<uuid:org_id>/invitations/<uuid:invitation_id>/cancel/",
        views.cancel,
        name="invitation-cancel",
    ),
    # before the link's pattern: "open" is not a token
    path("invitations/open/", views.invitation_open_page, name="invitation-open"),
    path("invitations/<str:token>/", views.invitation_page, name="invitation"),
]
