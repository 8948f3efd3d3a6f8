"""Webhooks, the key-event outbox and delivery records (SPEC §4.11).

`Event` is the transactional outbox: a row is written in the same transaction
as the key change that caused it, together with one `Delivery` per subscribed
webhook and a queued task per delivery. A crash after the commit loses
nothing; a crash before it loses the change and the event together.
"""

from __future__ import annotations

import json
import uuid
from urllib.parse import urlsplit

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from apps.orgs.models import Organization
from core.times import iso


class EventType(models.TextChoices):
    KEY_MINTED = "key.minted"
    KEY_REVOKED = "key.revoked"
    KEY_ROLLED = "key.rolled"
    KEY_UPDATED = "key.updated"
    KEY_REVOKED_BY_LEAK_REPORT = "key.revoked_by_leak_report"
    KEY_LEAK_REPORTED = "key.leak_reported"
    KEY_EXPIRING = "key.expiring"
    KEY_UNUSED = "key.unused"


class Webhook(models.Model):
    """An organization's endpoint. The signing secret is stored encrypted, never in clear.

    `secret_ciphertext` is a Fernet token (apps.webhooks.crypto) under a key
    derived from SECRET_KEY; the plaintext `whsec_…` is returned once, by the
    create service. `consecutive_failures` counts events that failed for good in
    a row; at 100 the webhook is disabled.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="webhooks"
    )
    url = models.CharField(max_length=2048)
    events = models.JSONField(default=list)
    secret_ciphertext = models.TextField(editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    #: As an API key's (`ApiKey.created_by_email`): the creator's address when it was added.
    created_by_email = models.CharField(
        max_length=254, blank=True, default="", db_default="", editable=False
    )
    created_at = models.DateTimeField(default=timezone.now)
    disabled_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)

    class Meta:
        indexes = [
            models.Index(fields=["organization", "-created_at"], name="webhooks_org_created"),
        ]

    def __str__(self) -> str:
        return f"{self.url_host} ({self.id})"

    @property
    def is_enabled(self) -> bool:
        return self.disabled_at is None

    @property
    def url_host(self) -> str:
        """The host alone: what logs and audit events say (a URL path may hold a token)."""
        try:
            return urlsplit(self.url).hostname or ""
        except ValueError:
            return ""


class Event(models.Model):
    """One key event, with its stable id (the `id` of every delivery of it)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="key_events"
    )
    type = models.CharField(max_length=40, choices=EventType.choices)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["type", "created_at"], name="webhooks_event_type_created"),
            models.Index(fields=["created_at"], name="webhooks_event_created"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"

    def body(self) -> bytes:
        """The delivery body: the same bytes on every attempt."""
        return json.dumps(
            {
                "id": str(self.id),
                "type": self.type,
                "createdAt": iso(self.created_at),
                "organizationId": str(self.organization_id),
                "data": self.data,
            },
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"


class Delivery(models.Model):
    """One event to one webhook: attempts, the last answer, and when to try next.

    `locked_until` is a lease taken with a conditional UPDATE before an attempt,
    so two workers never post the same delivery at once.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=200, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    locked_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Its place in the queue while its next attempt waits in its organization's turn
    # (`apps.webhooks.delivery`: organizations take turns); none once the attempt is made,
    # and for an organization's first attempt, which goes ahead.
    turn = models.PositiveIntegerField(null=True, blank=True)
    # Set while the delivery waits for one of its organization's attempts in flight to end
    # (WEBHOOK_ATTEMPTS_PER_ORGANIZATION): that attempt queues it when it ends.
    parked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["event", "webhook"], name="webhooks_one_delivery"),
            models.CheckConstraint(
                condition=Q(status__in=DeliveryStatus.values), name="webhooks_delivery_status"
            ),
        ]
        indexes = [
            models.Index(fields=["webhook", "-created_at"], name="webhooks_delivery_webhook"),
            models.Index(fields=["status", "next_attempt_at"], name="webhooks_delivery_due"),
            # The deliveries waiting in turn, and no other: the earliest turn and an
            # organization's last are read among them (a review: every pending delivery
            # was read, 45 ms a wake-up behind 100,000 retries in backoff).
            models.Index(
                fields=["turn"],
                name="webhooks_delivery_turn",
                condition=Q(status="pending", turn__isnull=False),
            ),
            # The attempts in flight (a few, one per busy worker), counted per organization
            # before each attempt, and the deliveries waiting for them, in turn.
            models.Index(
                fields=["locked_until"],
                name="webhooks_delivery_leased",
                condition=Q(locked_until__isnull=False),
            ),
            models.Index(
                fields=["turn"],
                name="webhooks_delivery_parked",
                condition=Q(status="pending", parked_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} → {self.webhook_id}: {self.status}"
