"""Reads on webhooks, always scoped to one organization (an id from another is NOT_FOUND)."""

from __future__ import annotations

from typing import Any

from django.db.models import OuterRef, Q, QuerySet, Subquery

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


def recent_deliveries_of(webhooks: list[Webhook], count: int) -> dict[Any, list[Delivery]]:
    """The newest `count` deliveries of each webhook (id → newest first), in two queries
    whatever the number of webhooks: the position (time, id) of each webhook's `count`-th
    newest delivery (read from its index), then the deliveries from it on, of each. A row
    number per webhook in one query ranked every delivery of the organization's 30 days: 130
    to 290 ms at 60,000 (a large-tenant audit)."""
    newest_first = ("-created_at", "-id")
    nth = Delivery.objects.filter(webhook=OuterRef("pk")).order_by(*newest_first)[count - 1 : count]
    positions = (
        Webhook.objects.filter(pk__in=[webhook.pk for webhook in webhooks])
        .annotate(since=Subquery(nth.values("created_at")), since_id=Subquery(nth.values("id")))
        .values_list("pk", "since", "since_id")
    )
    recent = Q()
    for pk, moment, nth_id in positions:
        if moment is None:  # fewer than `count`: all of the webhook's
            recent |= Q(webhook_id=pk)
        else:  # a fan-out stamps many at one instant: the id decides among them
            recent |= Q(
                Q(created_at__gt=moment) | Q(created_at=moment, id__gte=nth_id),
                webhook_id=pk,
                created_at__gte=moment,
            )
    found: dict[Any, list[Delivery]] = {webhook.pk: [] for webhook in webhooks}
    if not recent:  # no webhook (or deleted meanwhile): no condition, so no query
        return found
    for delivery in Delivery.objects.filter(recent).select_related("event").order_by(*newest_first):
        found[delivery.webhook_id].append(delivery)
    return found
