from django.urls import path

from apps.webhooks import views

urlpatterns = [
    path("orgs/<uuid:org_id>/webhooks/", views.webhooks_page, name="webhooks"),
    path(
        "orgs/<uuid:org_id>/webhooks/<uuid:webhook_id>/delete/",
        views.delete_webhook,
        name="webhook-delete",
    ),
    path(
        "orgs/<uuid:org_id>/webhooks/<uuid:webhook_id>/enable/",
        views.enable_webhook,
        name="webhook-enable",
    ),
]
