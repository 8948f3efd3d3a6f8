"""Project configuration API (SPEC §4.5): `/v1/config`, log sources and channels.

Every view is project-scoped: the project comes from the credential and
`X-Project-Id`, reading needs `config:read` and writing `config:write`, and a
row of another project is 404 NOT_FOUND. The configuration's models, services
and selectors live in `apps.projects`; its views live here because they need the
access policy (`apps.orgs.scoped_api`), and `apps/projects` sits below `apps/orgs`.
"""

from __future__ import annotations

from types import SimpleNamespace

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from apps.orgs.scoped_api import PROJECT_ERRORS, PROJECT_HEADER, ProjectScopedView
from apps.projects import selectors, services
from apps.projects.serializers import (
    ChannelInputSerializer,
    ChannelSerializer,
    ConfigSerializer,
    LogSourceInputSerializer,
    LogSourceSerializer,
    validated,
)
from core.permissions import Permission

CONFIG_WRITE = {
    "POST": Permission.CONFIG_WRITE,
    "PATCH": Permission.CONFIG_WRITE,
    "DELETE": Permission.CONFIG_WRITE,
}


class ConfigView(ProjectScopedView):
    """The project's log sources and notification channels (`config:read`)."""

    permission_by_method = {"GET": Permission.CONFIG_READ}

    @extend_schema(parameters=[PROJECT_HEADER], responses={200: ConfigSerializer, **PROJECT_ERRORS})
    def get(self, request):
        config = SimpleNamespace(
            log_sources=selectors.log_sources_of(project=self.project),
            channels=selectors.channels_of(project=self.project),
        )
        return Response(ConfigSerializer(config).data)


class LogSourceCollectionView(ProjectScopedView):
    """Add a log source (`config:write`)."""

    permission_by_method = CONFIG_WRITE

    @extend_schema(
        parameters=[PROJECT_HEADER],
        request=LogSourceInputSerializer,
        responses={201: LogSourceSerializer, **PROJECT_ERRORS},
    )
    def post(self, request):
        data = validated(LogSourceInputSerializer, request.data)
        log_source = services.create_log_source(project=self.project, **data)
        return Response(LogSourceSerializer(log_source).data, status=201)


class LogSourceDetailView(ProjectScopedView):
    """Change or remove a log source (`config:write`)."""

    permission_by_method = CONFIG_WRITE

    @extend_schema(
        parameters=[PROJECT_HEADER],
        request=LogSourceInputSerializer(partial=True),
        responses={200: LogSourceSerializer, **PROJECT_ERRORS},
    )
    def patch(self, request, log_source_id):
        log_source = selectors.log_source_in_project(
            project=self.project, log_source_id=log_source_id
        )
        changes = validated(LogSourceInputSerializer, request.data, partial=True)
        log_source = services.update_log_source(log_source=log_source, changes=changes)
        return Response(LogSourceSerializer(log_source).data)

    @extend_schema(parameters=[PROJECT_HEADER], responses={204: None, **PROJECT_ERRORS})
    def delete(self, request, log_source_id):
        log_source = selectors.log_source_in_project(
            project=self.project, log_source_id=log_source_id
        )
        services.delete_log_source(log_source=log_source)
        return Response(status=204)


class ChannelCollectionView(ProjectScopedView):
    """Add a notification channel (`config:write`)."""

    permission_by_method = CONFIG_WRITE

    @extend_schema(
        parameters=[PROJECT_HEADER],
        request=ChannelInputSerializer,
        responses={201: ChannelSerializer, **PROJECT_ERRORS},
    )
    def post(self, request):
        data = validated(ChannelInputSerializer, request.data)
        channel = services.create_channel(project=self.project, **data)
        return Response(ChannelSerializer(channel).data, status=201)


class ChannelDetailView(ProjectScopedView):
    """Change or remove a notification channel (`config:write`)."""

    permission_by_method = CONFIG_WRITE

    @extend_schema(
        parameters=[PROJECT_HEADER],
        request=ChannelInputSerializer(partial=True),
        responses={200: ChannelSerializer, **PROJECT_ERRORS},
    )
    def patch(self, request, channel_id):
        channel = selectors.channel_in_project(project=self.project, channel_id=channel_id)
        changes = validated(ChannelInputSerializer, request.data, partial=True)
        channel = services.update_channel(channel=channel, changes=changes)
        return Response(ChannelSerializer(channel).data)

    @extend_schema(parameters=[PROJECT_HEADER], responses={204: None, **PROJECT_ERRORS})
    def delete(self, request, channel_id):
        channel = selectors.channel_in_project(project=self.project, channel_id=channel_id)
        services.delete_channel(channel=channel)
        return Response(status=204)
