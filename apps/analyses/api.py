"""Analyses API (SPEC §4.4): list, create, read, follow-ups and feedback.

Project-scoped: the project comes from the credential and `X-Project-Id`;
reading needs `analysis:read`, every POST `analysis:create`. An analysis of
another project is 404 NOT_FOUND. These endpoints answer CORS for the
browser SDK (settings.CORS_URLS_REGEX).
"""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from apps.analyses import selectors, services
from apps.analyses.serializers import (
    AnalysisInputSerializer,
    AnalysisPageSerializer,
    AnalysisSerializer,
    FeedbackInputSerializer,
    FeedbackSerializer,
    FollowUpInputSerializer,
    FollowUpSerializer,
)
from apps.orgs.scoped_api import PROJECT_ERRORS, PROJECT_HEADER, ProjectScopedView
from apps.projects.serializers import validated
from core.api import paginate
from core.openapi import PAGE_PARAMETERS
from core.permissions import Permission

CREATE_ONLY = {"POST": Permission.ANALYSIS_CREATE}


def _per_project(budget: tuple[str, str]) -> str:
    """What the description of a POST says of its budget (`THROTTLE_RATES`)."""
    hour, day = (settings.THROTTLE_RATES[scope][0] for scope in budget)
    return (
        f"Throttled per project, whatever the credential: {hour:,} an hour and {day:,} a "
        "UTC day (429 RATE_LIMITED with `Retry-After`; nothing is stored nor counted)"
    )


def _analysis_json(analysis) -> dict:
    return AnalysisSerializer(analysis).data


class AnalysisCollectionView(ProjectScopedView):
    """The project's analyses, newest first (`analysis:read`); POST queues a new one
    (`analysis:create`)."""

    permission_by_method = {"GET": Permission.ANALYSIS_READ, "POST": Permission.ANALYSIS_CREATE}

    @extend_schema(
        operation_id="analyses_list",
        parameters=[PROJECT_HEADER, *PAGE_PARAMETERS],
        responses={200: AnalysisPageSerializer, **PROJECT_ERRORS},
    )
    def get(self, request):
        return paginate(self, selectors.analyses_of(project=self.project), _analysis_json)

    @extend_schema(
        description=(
            "Queues an analysis of `input` (at most 100,000 characters). "
            f"{_per_project(services.CREATE_BUDGET)}."
        ),
        parameters=[PROJECT_HEADER],
        request=AnalysisInputSerializer,
        responses={201: AnalysisSerializer, **PROJECT_ERRORS},
    )
    def post(self, request):
        data = validated(AnalysisInputSerializer, request.data)
        analysis = services.create_analysis(principal=self.principal, project=self.project, **data)
        return Response(_analysis_json(analysis), status=201)


class AnalysisDetailView(ProjectScopedView):
    """One analysis with its follow-ups and feedback (`analysis:read`)."""

    permission_by_method = {"GET": Permission.ANALYSIS_READ}

    @extend_schema(
        parameters=[PROJECT_HEADER], responses={200: AnalysisSerializer, **PROJECT_ERRORS}
    )
    def get(self, request, analysis_id):
        analysis = selectors.analysis_in_project(project=self.project, analysis_id=analysis_id)
        return Response(_analysis_json(analysis))


class FollowUpCollectionView(ProjectScopedView):
    """Ask a follow-up question about an analysis (`analysis:create`)."""

    permission_by_method = CREATE_ONLY

    @extend_schema(
        description=(
            f"At most {services.MAX_FOLLOW_UPS} per analysis (400 VALIDATION_ERROR on "
            f"`question`). {_per_project(services.REPLY_BUDGET)}, follow-ups and feedback "
            "together."
        ),
        parameters=[PROJECT_HEADER],
        request=FollowUpInputSerializer,
        responses={201: FollowUpSerializer, **PROJECT_ERRORS},
    )
    def post(self, request, analysis_id):
        analysis = selectors.analysis_in_project(
            project=self.project, analysis_id=analysis_id, with_thread=False
        )
        data = validated(FollowUpInputSerializer, request.data)
        follow_up = services.create_follow_up(principal=self.principal, analysis=analysis, **data)
        return Response(FollowUpSerializer(follow_up).data, status=201)


class FeedbackCollectionView(ProjectScopedView):
    """Rate an analysis up or down, with an optional comment (`analysis:create`)."""

    permission_by_method = CREATE_ONLY

    @extend_schema(
        description=(
            f"At most {services.MAX_FEEDBACK} per analysis (400 VALIDATION_ERROR on "
            f"`rating`). {_per_project(services.REPLY_BUDGET)}, follow-ups and feedback "
            "together."
        ),
        parameters=[PROJECT_HEADER],
        request=FeedbackInputSerializer,
        responses={201: FeedbackSerializer, **PROJECT_ERRORS},
    )
    def post(self, request, analysis_id):
        analysis = selectors.analysis_in_project(
            project=self.project, analysis_id=analysis_id, with_thread=False
        )
        data = validated(FeedbackInputSerializer, request.data)
        feedback = services.create_feedback(principal=self.principal, analysis=analysis, **data)
        return Response(FeedbackSerializer(feedback).data, status=201)
