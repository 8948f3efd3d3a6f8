from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class AuditEvent(models.Model):
    """Who did what to which key, member or project. Append-only.

    Written only by apps.audit.services.record_event; nothing in the API or
    the admin edits or deletes one. Actor and target labels are snapshots so an
    event still reads correctly after the user or key is gone.
    """

    class ActorType(models.TextChoices):
        USER = "user", "User"
        KEY = "key", "API key"
        ANONYMOUS = "anonymous", "Anonymous"
        SYSTEM = "system", "System"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        "orgs.Organization", on_delete=models.CASCADE, related_name="audit_events"
    )
    project = models.ForeignKey(
        "projects.Project", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    action = models.CharField(max_length=64)
    actor_type = models.CharField(max_length=16, choices=ActorType.choices)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    actor_key = models.ForeignKey(
        "apikeys.ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    actor_label = models.CharField(max_length=254, blank=True)
    target_type = models.CharField(max_length=32, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=254, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=256, blank=True)
    details = models.JSONField(default=dict, blank=True)
    #: Made by an operator in the Django admin: its IP is the operator's, for operators only.
    #: A database default too: a process of the release before inserts events without it.
    through_admin = models.BooleanField(default=False, db_default=False, editable=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["organization", "-created_at"], name="audit_org_created"),
            # The operators' list (the admin), newest first across organizations: without
            # it, a sort of every event of every tenant for each page (48 ms at 100,000).
            models.Index(fields=["-created_at", "-id"], name="audit_created"),
            models.Index(fields=["organization", "action", "-created_at"], name="audit_org_action"),
            # The events about one account as a member (`forget_account`, in an account
            # deletion's transaction, under its locks): without it, a scan of every event
            # of every tenant, twice (190 ms at 200,000). Member events only: a quarter of
            # the rows, and the key events, most of the writes, do not maintain it.
            models.Index(
                fields=["target_id"],
                condition=models.Q(target_type="user"),
                name="audit_user_target",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor_label or self.actor_type}"

    @property
    def shown_ip(self) -> str | None:
        """The IP the organization sees (API and page): none for an anonymous actor, the
        sender of a leak report, a stranger whose address the key's owner has no claim to,
        nor for an operator's change through the admin, which lands in every organization
        its user belongs to (a privacy audit; GitHub shows its staff without one). The
        admin shows both to operators."""
        if self.actor_type == self.ActorType.ANONYMOUS or self.through_admin:
            return None
        return self.ip
