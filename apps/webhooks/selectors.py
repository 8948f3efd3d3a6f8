"""Reads on webhooks, always scoped to one organization (an id from another is NOT_FOUND)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from apps.webhooks.models import Delivery, Webhook
from core.errors import NotFound
from core.validation import parse_uuid


def webhooks_of(organization_id: Any) -> QuerySet[Webhook]:
    return Webhook.objects.filter(organization_id=organization_id).order_by("-created_at", "-id")


def webhook_of(organization_id: Any, webhook_id: Any) -> Webhook:
    try:
        pk = parse_uuid(webhook_id)
    except ValueError as exc:
        raise NotFound() from exc
    webhook = Webhook.objects.filter(organization_id=organization_id, pk=pk).first()
    if webhook is None:
        raise NotFound()
    return webhook


def deliveries_of(webhook: Webhook) -> QuerySet[Delivery]:
    """Newest first: the page shows the first few, the API pages through them."""
    return (
        Delivery.objects.filter(webhook=webhook)
        .select_related("event")
        .order_by("-created_at", "-id")
    )
