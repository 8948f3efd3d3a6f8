"""Reads on analyses, always inside the project the caller resolved."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from apps.analyses.models import Analysis
from apps.projects.selectors import ProjectLike
from core.errors import NotFound
from core.validation import parse_uuid


def analyses_of(*, project: ProjectLike) -> QuerySet[Analysis]:
    """The project's analyses, newest first, follow-ups and feedback in two more queries."""
    return (
        Analysis.objects.filter(project_id=project.id)
        .prefetch_related("follow_ups", "feedback")
        .order_by("-created_at", "-id")
    )


def analysis_in_project(
    *, project: ProjectLike, analysis_id: Any, with_thread: bool = True
) -> Analysis:
    """One analysis of the project; a malformed id or another project's is 404 NOT_FOUND.

    `with_thread=False` skips loading follow-ups and feedback (for writes that
    only need the analysis to exist in the project).
    """
    try:
        analysis_uuid = parse_uuid(analysis_id)
    except ValueError as exc:
        raise NotFound() from exc
    queryset = Analysis.objects.filter(project_id=project.id)
    if with_thread:
        queryset = queryset.prefetch_related("follow_ups", "feedback")
    analysis = queryset.filter(id=analysis_uuid).first()
    if analysis is None:
        raise NotFound()
    return analysis
