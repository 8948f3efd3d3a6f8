from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from apps.orgs.models import Organization
from core.permissions import Role


class Invitation(models.Model):
    """An invitation of an email address to an organization, valid seven days, used once.

    Only the SHA-256 digest of the token is stored (unique index); the token
    itself exists only in the link of the invitation email. `email` is the
    address as the inviter typed it, in NFKC (the mail goes there);
    `normalized_email` is it case-folded too: only a user whose normalized
    email equals it may accept. An invitation is pending until it is accepted,
    cancelled or past `expires_at`.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="invitations"
    )
    email = models.CharField(max_length=254)
    normalized_email = models.CharField(max_length=254)
    role = models.CharField(max_length=16, choices=Role.choices)
    # Unique by the constraint below: `unique=True` would also give PostgreSQL a second,
    # `varchar_pattern_ops` index of every digest, for LIKE queries no digest ever meets.
    token_digest = models.CharField(max_length=64)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["organization", "normalized_email"], name="invitations_org_email"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(role__in=Role.values), name="invitations_role_known"
            ),
            models.UniqueConstraint(
                fields=["token_digest"], name="invitations_token_digest_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"invitation of {self.email} to {self.organization_id}"

    def is_pending(self, now=None) -> bool:
        now = now or timezone.now()
        return self.accepted_at is None and self.cancelled_at is None and self.expires_at > now
