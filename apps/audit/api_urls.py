from django.urls import path

from apps.audit import api

urlpatterns = [
    path(
        "organizations/<str:org_id>/audit-events",
        api.AuditEventsView.as_view(),
        name="api-audit-events",
    ),
]
