from __future__ import annotations

import uuid
from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from apps.orgs.models import Organization
from apps.projects.models import Project


class KeyType(models.TextChoices):
    PUBLIC = "public", "Public (SDK)"
    SECRET = "secret", "Secret"


class KeyScope(models.TextChoices):
    PROJECT = "project", "Project"
    ORGANIZATION = "organization", "Organization"


class KeyStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    REVOKED = "revoked", "Revoked"
    EXPIRED = "expired", "Expired"


def active_at(now: datetime) -> Q:
    """The keys `ApiKey.status_at(now)` calls active, as a filter: not revoked, not expired,
    and no legacy key once legacy keys stopped working."""
    active = Q(revoked_at__isnull=True) & (Q(expires_at__isnull=True) | Q(expires_at__gt=now))
    if now >= settings.LEGACY_KEYS_SUNSET_AT:
        active &= Q(legacy=False)
    return active


def expired_at(now: datetime) -> Q:
    """The keys `ApiKey.status_at(now)` calls expired, as a filter: not revoked, not active."""
    return Q(revoked_at__isnull=True) & ~active_at(now)


class ApiKey(models.Model):
    """An API key. Stores only the SHA-256 digest of the key and a display prefix.

    The plaintext key exists only in the return value of the mint service (and
    the one response or page that shows it). `digest` is unique, so one indexed
    lookup finds the key; `prefix` is the type prefix plus the first 8
    characters of the random part, enough to recognise a key, never to use it.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="api_keys"
    )
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="api_keys", null=True, blank=True
    )
    type = models.CharField(max_length=16, choices=KeyType.choices)
    scope = models.CharField(max_length=16, choices=KeyScope.choices)
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=32, db_index=True)
    # Unique by the constraint below: `unique=True` would also give PostgreSQL a second,
    # `varchar_pattern_ops` index of every digest, for LIKE queries no digest ever meets.
    digest = models.CharField(max_length=64, editable=False)
    permissions = models.JSONField(default=list)
    legacy = models.BooleanField(default=False)
    allowed_origins = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    #: The creator's address when the key was made, as the organization knew them: not the
    #: address an operator later gives a member who left (a privacy audit). Emptied when
    #: the account is deleted (`apps.apikeys.apps.forget_creator`).
    created_by_email = models.CharField(
        max_length=254, blank=True, default="", db_default="", editable=False
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    revoked_reason = models.CharField(max_length=32, blank=True)
    #: When a leak report last flagged this SDK key (public by design: never revoked for
    #: it); its row and page say so while it is active (a rolled key, until its grace ends).
    leak_reported_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_used_project = models.ForeignKey(
        Project, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    #: Written with `last_used_at` (at most once a minute): the client IP per NUM_PROXIES,
    #: and the first 200 characters of its User-Agent (text, never rendered unescaped).
    last_used_ip = models.GenericIPAddressField(null=True, blank=True)
    last_used_user_agent = models.CharField(max_length=200, blank=True, default="")
    #: Guardrails (SPEC §4.10). A rate limit is both numbers or neither.
    rate_limit_requests = models.PositiveIntegerField(null=True, blank=True)
    rate_limit_seconds = models.PositiveIntegerField(null=True, blank=True)
    #: Normalized CIDRs (secret and org keys); empty: any client IP.
    allowed_ips = models.JSONField(default=list, blank=True)
    #: Project ids (text) an org key is confined to; empty: every project of its organization.
    project_ids = models.JSONField(default=list, blank=True)
    replaces = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="replaced_by",
        help_text="The key this one was rolled from or minted to replace.",
    )

    class Meta:
        verbose_name = "API key"
        indexes = [
            # A project's two collections (SDK keys, API keys) are told apart by `type`:
            # with it in the index, a page of either is a range scan, however many keys
            # of the other kind the project holds.
            models.Index(
                fields=["project", "type", "-created_at"], name="apikeys_project_type_created"
            ),
            models.Index(
                fields=["organization", "scope", "-created_at"], name="apikeys_org_scope_created"
            ),
            # The key pages' legacy banner counts these on every view: a few rows, not a
            # walk through every key of the organization.
            models.Index(
                fields=["organization", "project"],
                condition=Q(legacy=True, revoked_at__isnull=True),
                name="apikeys_legacy_unrevoked",
            ),
            # The worker's expiry checks (every five minutes) read the active keys expiring
            # within a week: a range of this, not a scan of every key (400 ms at 100,000).
            models.Index(
                fields=["expires_at"],
                condition=Q(revoked_at__isnull=True, expires_at__isnull=False),
                name="apikeys_active_expiry",
            ),
            # A mint counts the organization's active keys (MAX_ACTIVE_KEYS_PER_ORGANIZATION):
            # the unrevoked ones, not every key it ever revoked.
            models.Index(
                fields=["organization", "expires_at"],
                condition=Q(revoked_at__isnull=True),
                name="apikeys_org_unrevoked",
            ),
        ]
        constraints = [
            models.UniqueConstraint(fields=["digest"], name="apikeys_digest_unique"),
            models.CheckConstraint(
                condition=(Q(scope=KeyScope.PROJECT) & Q(project__isnull=False))
                | (Q(scope=KeyScope.ORGANIZATION) & Q(project__isnull=True)),
                name="apikeys_project_iff_project_scope",
            ),
            models.CheckConstraint(condition=Q(type__in=KeyType.values), name="apikeys_type_known"),
            models.CheckConstraint(
                condition=~Q(type=KeyType.PUBLIC) | Q(scope=KeyScope.PROJECT, legacy=False),
                name="apikeys_public_keys_are_project_keys",
            ),
            models.CheckConstraint(
                condition=Q(legacy=False) | Q(scope=KeyScope.PROJECT, type=KeyType.SECRET),
                name="apikeys_legacy_keys_are_project_secret_keys",
            ),
            models.CheckConstraint(
                condition=Q(rate_limit_requests__isnull=True, rate_limit_seconds__isnull=True)
                | Q(
                    rate_limit_requests__gte=1,
                    rate_limit_requests__lte=100_000,
                    rate_limit_seconds__gte=1,
                    rate_limit_seconds__lte=86_400,
                ),
                name="apikeys_rate_limit_both_or_neither",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def rate_limit(self) -> dict | None:
        if self.rate_limit_requests is None:
            return None
        return {"requests": self.rate_limit_requests, "perSeconds": self.rate_limit_seconds}

    def status_at(self, now: datetime) -> str:
        """`expired` too for a legacy key once legacy keys stopped working (the sunset): it
        was listed `active` while every request with it failed (SPEC §2.3)."""
        if self.revoked_at is not None:
            return KeyStatus.REVOKED
        if self.expires_at is not None and self.expires_at <= now:
            return KeyStatus.EXPIRED
        if self.legacy and now >= settings.LEGACY_KEYS_SUNSET_AT:
            return KeyStatus.EXPIRED
        return KeyStatus.ACTIVE

    @property
    def status(self) -> str:
        return self.status_at(timezone.now())

    @property
    def is_project_key(self) -> bool:
        return self.scope == KeyScope.PROJECT


class Granularity(models.TextChoices):
    HOUR = "hour", "Hour"
    DAY = "day", "Day"


class KeyUsage(models.Model):
    """Requests and refusals of one key in one UTC hour or day (SPEC §4.9).

    Counted in Redis on the request path and copied here at least once a minute
    (`apps.apikeys.usage.flush`). Redis counters are cumulative within an `epoch` (the id
    of one Redis lifetime); a row holds the largest value seen for its epoch, so a
    copy can be repeated or run concurrently without counting twice, and a Redis
    restart starts a new epoch instead of lowering a count.
    """

    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    granularity = models.CharField(max_length=4, choices=Granularity.choices)
    start = models.DateTimeField()
    epoch = models.CharField(max_length=32)
    requests = models.BigIntegerField(default=0)
    refused = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["key", "granularity", "start", "epoch"], name="apikeys_usage_bucket"
            ),
        ]
        indexes = [models.Index(fields=["granularity", "start"], name="apikeys_usage_age")]

    def __str__(self) -> str:
        return f"{self.granularity} {self.start:%Y-%m-%d %H:00}: {self.requests}"


class KeyUsageIp(models.Model):
    """A client IP seen with a key: cumulative requests per epoch, and when it was last seen.

    The epoch of IP counts is their Redis hash's own (`#`, `apps.apikeys.gate.counters`): it
    expires after two idle days and starts again from zero under a new epoch.
    """

    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    ip = models.GenericIPAddressField()
    epoch = models.CharField(max_length=32)
    requests = models.BigIntegerField(default=0)
    last_seen_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["key", "ip", "epoch"], name="apikeys_usage_ip"),
        ]
        # Every copy (each 30 s) deletes the IPs unseen for 90 days: a range of this, not a
        # scan of up to 60 rows a key.
        indexes = [models.Index(fields=["last_seen_at"], name="apikeys_usage_ip_seen")]

    def __str__(self) -> str:
        return f"{self.ip}: {self.requests}"
