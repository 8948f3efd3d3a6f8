from django.urls import path

from apps.orgs import audit_views, views

urlpatterns = [
    path("", views.home, name="home"),
    path("orgs/<uuid:org_id>/projects/", views.create_project, name="project-create"),
    path("orgs/<uuid:org_id>/members/", views.members, name="members"),
    path("orgs/<uuid:org_id>/members/<uuid:user_id>/role/", views.member_role, name="member-role"),
    path(
        "orgs/<uuid:org_id>/members/<uuid:user_id>/remove/",
        views.remove_member,
        name="member-remove",
    ),
    path("orgs/<uuid:org_id>/audit-log/", audit_views.audit_log, name="audit-log"),
    path(
        "orgs/<uuid:org_id>/audit-log/export.csv",
        audit_views.audit_log_export,
        {"file_format": "csv"},
        name="audit-log-csv",
    ),
    path(
        "orgs/<uuid:org_id>/audit-log/export.jsonl",
        audit_views.audit_log_export,
        {"file_format": "jsonl"},
        name="audit-log-jsonl",
    ),
]
