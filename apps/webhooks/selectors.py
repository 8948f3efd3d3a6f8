"""Reads on webhooks, always scoped to one organization (an id from another is NOT_FOUND)."""

from __future__ import annotations

from typing import Any

from django.db.models import F, QuerySet, Window
from django.db.models.functions import RowNumber

from apps.webhooks.models import Delivery, Webhook
from core.errors import NotFound
from core.validation import parse_uuid


def webhooks_of(organization_id: Any) -> QuerySet[Webhook]:
    return (
        Webhook.objects.filter(organization_id=organization_id)
        .select_related("created_by")
        .order_by("-created_at", "-id")
    )


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


def recent_deliveries_of(webhooks: list[Webhook], count: int) -> dict[Any, list[Delivery]]:
    """The newest `count` deliveries of each webhook (id → newest first), in one query: a
    row number per webhook, rather than a query per webhook on the dashboard's page."""
    newest_first = [F("created_at").desc(), F("id").desc()]
    rows = (
        Delivery.objects.filter(webhook__in=webhooks)
        .select_related("event")
        .annotate(place=Window(RowNumber(), partition_by=[F("webhook_id")], order_by=newest_first))
        .filter(place__lte=count)
        .order_by("webhook_id", "place")
    )
    found: dict[Any, list[Delivery]] = {webhook.pk: [] for webhook in webhooks}
    for delivery in rows:
        found[delivery.webhook_id].append(delivery)
    return found
