from django.urls import path

from apps.audit import views

urlpatterns = [
    path("orgs/<uuid:org_id>/audit-log/", views.audit_log, name="audit-log"),
]
