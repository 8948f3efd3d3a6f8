"""Webhooks of an organization (SPEC §4.11)."""

from django.urls import path

from apps.webhooks import api

BASE = "organizations/<str:org_id>/webhooks"

urlpatterns = [
    path(BASE, api.WebhooksView.as_view(), name="api-webhooks"),
    path(f"{BASE}/<str:webhook_id>", api.WebhookView.as_view(), name="api-webhook"),
    path(
        f"{BASE}/<str:webhook_id>/enable",
        api.WebhookEnableView.as_view(),
        name="api-webhook-enable",
    ),
    path(
        f"{BASE}/<str:webhook_id>/deliveries",
        api.WebhookDeliveriesView.as_view(),
        name="api-webhook-deliveries",
    ),
]
