"""Reads on project configuration, always inside the project the caller resolved."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet

from apps.projects.models import Channel, LogSource, Project
from core.errors import NotFound


def log_sources_of(*, project: Project) -> QuerySet[LogSource]:
    return LogSource.objects.filter(project=project).order_by("created_at", "id")


def channels_of(*, project: Project) -> QuerySet[Channel]:
    return Channel.objects.filter(project=project).order_by("created_at", "id")


def _one_in_project(queryset: QuerySet, row_id: Any):
    """One row of the project; a malformed id or another project's row is 404 NOT_FOUND."""
    try:
        row_uuid = uuid.UUID(str(row_id))
    except ValueError as exc:
        raise NotFound() from exc
    row = queryset.filter(id=row_uuid).first()
    if row is None:
        raise NotFound()
    return row


def log_source_in_project(*, project: Project, log_source_id: Any) -> LogSource:
    return _one_in_project(log_sources_of(project=project), log_source_id)


def channel_in_project(*, project: Project, channel_id: Any) -> Channel:
    return _one_in_project(channels_of(project=project), channel_id)
