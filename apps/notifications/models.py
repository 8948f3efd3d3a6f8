"""Reminders (what was decided to tell whom, once) and the worker's schedules."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from apps.orgs.models import Organization


class ReminderKind(models.TextChoices):
    KEY_EXPIRING_7D = "key_expiring_7d", "Key expires in 7 days"
    KEY_EXPIRING_1D = "key_expiring_1d", "Key expires in 1 day"
    KEY_UNUSED = "key_unused", "Key unused for 90 days"
    KEY_REVOKED_BY_LEAK_REPORT = "key_revoked_by_leak_report", "Key revoked by a leak report"
    KEY_LEAK_REPORTED = "key_leak_reported", "SDK key reported leaked"
    LEGACY_SUNSET_30D = "legacy_sunset_30d", "Legacy keys stop in 30 days"
    LEGACY_SUNSET_7D = "legacy_sunset_7d", "Legacy keys stop in 7 days"
    WEBHOOK_DISABLED = "webhook_disabled", "Webhook disabled"


class Reminder(models.Model):
    """One notification, decided once: the unique `dedupe_key` is what stops a second one.

    Several workers may find the same due reminder; only one INSERT succeeds, and
    only its email and webhook event go out. `emailed_at` stays empty until the
    mail server took every recipient's copy; failures are retried from
    `next_email_at`, for the recipients not yet done (`emailed_to`).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=32, choices=ReminderKind.choices)
    # Unique by the constraint below: `unique=True` would also give PostgreSQL a second,
    # `varchar_pattern_ops` index of every key, for LIKE queries no key ever meets.
    dedupe_key = models.CharField(max_length=200)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    api_key = models.ForeignKey(
        "apikeys.ApiKey", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    webhook = models.ForeignKey(
        "webhooks.Webhook", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    emailed_at = models.DateTimeField(null=True, blank=True)
    #: The addresses done with while the rest were retried: the mail server took their copy,
    #: or refused the address for good (a 5xx). A retry never sends them a second copy.
    #: Emptied with `emailed_at` being set, or once the email is given up: no retry follows.
    emailed_to = models.JSONField(default=list, blank=True)
    email_attempts = models.PositiveIntegerField(default=0)
    next_email_at = models.DateTimeField(default=timezone.now)
    locked_until = models.DateTimeField(null=True, blank=True)
    #: The email claim that holds it until `locked_until` (one per message being sent).
    claim = models.UUIDField(null=True, blank=True, editable=False)
    last_error = models.CharField(max_length=200, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["emailed_at", "next_email_at"], name="notif_reminder_unsent"),
            models.Index(fields=["claim"], name="notif_reminder_claim"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["dedupe_key"], name="notif_reminder_dedupe_unique"),
        ]

    def __str__(self) -> str:
        return self.dedupe_key


class Schedule(models.Model):
    """When a periodic job runs next; a conditional UPDATE lets one worker claim each run."""

    name = models.CharField(max_length=64, primary_key=True)
    next_run_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} at {self.next_run_at}"
