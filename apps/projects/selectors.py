"""Reads on project configuration, always inside the project the caller resolved."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, F, QuerySet, Window
from django.db.models.functions import RowNumber

from apps.projects.models import Channel, LogSource, Project
from core.errors import NotFound
from core.rows import as_uuid, bind, fetch_one
from core.validation import parse_uuid


@dataclass(frozen=True, slots=True)
class ProjectRecord:
    """The project a `/v1` request acts on (`ProjectScopedView.project`)."""

    id: uuid.UUID
    name: str
    organization_id: uuid.UUID


#: What reads and writes scoped to a project accept: the request's record or a model instance.
ProjectLike = ProjectRecord | Project

_PROJECT_BY_ID = f"SELECT id, name, organization_id FROM {Project._meta.db_table} WHERE id = %s"  # noqa: S608


def project_by_id(project_id: uuid.UUID) -> ProjectRecord | None:
    """One query by primary key. Callers check the organization (tenant) themselves."""
    row = fetch_one(_PROJECT_BY_ID, [bind(Project._meta.pk, project_id)])
    if row is None:
        return None
    return ProjectRecord(as_uuid(row[0]), row[1], as_uuid(row[2]))


def projects_of(membership: Any) -> QuerySet[Project]:
    """The projects of the caller's organization, newest first."""
    return Project.objects.filter(organization_id=membership.organization_id).order_by(
        "-created_at", "-id"
    )


def projects_by_name(organization_id: Any) -> QuerySet[Project]:
    """An organization's projects as the dashboard lists them: by name (then id)."""
    return Project.objects.filter(organization_id=organization_id).order_by("name", "id")


def first_projects_by_name(organization_ids: list, per_org: int) -> dict[Any, list[Project]]:
    """organization id -> its first `per_org` projects by name, in one query."""
    rank = Window(
        RowNumber(),
        partition_by=[F("organization_id")],
        order_by=[F("name").asc(), F("id").asc()],
    )
    ranked = (
        Project.objects.filter(organization_id__in=organization_ids)
        .annotate(rank=rank)
        .filter(rank__lte=per_org)
        .order_by("organization_id", "name", "id")
    )
    shown: dict[Any, list[Project]] = {}
    for project in ranked:
        shown.setdefault(project.organization_id, []).append(project)
    return shown


def project_counts(organization_ids: list) -> dict[Any, int]:
    """organization id -> how many projects it has (none: absent), in one query."""
    return dict(
        Project.objects.filter(organization_id__in=organization_ids)
        .values_list("organization_id")
        .annotate(count=Count("id"))
        .order_by()
    )


def log_sources_of(*, project: ProjectLike) -> QuerySet[LogSource]:
    return LogSource.objects.filter(project_id=project.id).order_by("created_at", "id")


def channels_of(*, project: ProjectLike) -> QuerySet[Channel]:
    return Channel.objects.filter(project_id=project.id).order_by("created_at", "id")


def _one_in_project(queryset: QuerySet, row_id: Any):
    """One row of the project; a malformed id or another project's row is 404 NOT_FOUND."""
    try:
        row_uuid = parse_uuid(row_id)
    except ValueError as exc:
        raise NotFound() from exc
    row = queryset.filter(id=row_uuid).first()
    if row is None:
        raise NotFound()
    return row


def log_source_in_project(*, project: ProjectLike, log_source_id: Any) -> LogSource:
    return _one_in_project(log_sources_of(project=project), log_source_id)


def channel_in_project(*, project: ProjectLike, channel_id: Any) -> Channel:
    return _one_in_project(channels_of(project=project), channel_id)
