from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from apps.projects.models import Project


class Authored(models.Model):
    """Who created a record: a user or an API key, with a snapshot for display.

    A key's label (its prefix) is kept after the key is deleted; a user's (their address)
    is emptied when the account is (`core.creators`, from `AnalysesConfig.ready`).
    """

    created_at = models.DateTimeField(default=timezone.now)
    created_by_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_by_key = models.ForeignKey(
        "apikeys.ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_by_type = models.CharField(max_length=8, choices=[("user", "User"), ("key", "Key")])
    created_by_label = models.CharField(max_length=254)

    class Meta:
        abstract = True

    @property
    def created_by(self) -> dict[str, str]:
        field = "prefix" if self.created_by_type == "key" else "email"
        return {"type": self.created_by_type, field: self.created_by_label}


class Analysis(Authored):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="analyses")
    title = models.CharField(max_length=200)
    input = models.TextField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)

    class Meta:
        verbose_name_plural = "analyses"
        indexes = [models.Index(fields=["project", "-created_at"], name="analyses_project_created")]

    def __str__(self) -> str:
        return self.title


class FollowUp(Authored):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    analysis = models.ForeignKey(Analysis, on_delete=models.CASCADE, related_name="follow_ups")
    question = models.TextField()

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.question[:50]


class Feedback(Authored):
    class Rating(models.TextChoices):
        UP = "up", "Up"
        DOWN = "down", "Down"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    analysis = models.ForeignKey(Analysis, on_delete=models.CASCADE, related_name="feedback")
    rating = models.CharField(max_length=4, choices=Rating.choices)
    comment = models.TextField(blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name_plural = "feedback"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(rating__in=["up", "down"]), name="analyses_feedback_rating_known"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.rating}: {self.comment[:40]}"
