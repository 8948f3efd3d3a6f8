"""Trivial views for the benchmark: the same view behind each authentication scheme.

Every view derives from `core.api.ApiView` (same content negotiation,
renderer and `finalize_response`, which records key use) and returns the same
tiny body; only the authentication and permission classes differ. The
difference between a view here and `NoAuthView` is therefore what the scheme
costs per request, nothing else.
"""

from __future__ import annotations

from django.db import connection
from knox.auth import TokenAuthentication as KnoxTokenAuthentication
from rest_framework.authentication import BaseAuthentication, TokenAuthentication
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework_api_key.permissions import HasAPIKey
from rest_framework_simplejwt.authentication import JWTAuthentication

from apps.apikeys.authentication import BearerAuthentication
from apps.orgs.scoped_api import ProjectScopedView
from core.api import ApiView
from core.permissions import IsAuthenticatedPrincipal, Permission
from core.sharedredis import redis_client


class _TrivialView(ApiView):
    def get(self, request):
        return Response({"ok": True})


class NoAuthView(_TrivialView):
    authentication_classes = ()
    permission_classes = (AllowAny,)


class _OneRoundTrip(BaseAuthentication):
    """Not an authentication: one `SELECT 1`, the floor any database-backed check pays."""

    def authenticate(self, request):
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return None


class RoundTripView(_TrivialView):
    authentication_classes = (_OneRoundTrip,)
    permission_classes = (AllowAny,)


class _OneRedisRoundTrip(BaseAuthentication):
    """Not an authentication: one Redis `PING`, what the usage counting and rate limit pay."""

    def authenticate(self, request):
        redis_client().ping()
        return None


class RedisRoundTripView(_TrivialView):
    authentication_classes = (_OneRedisRoundTrip,)
    permission_classes = (AllowAny,)


class OursView(_TrivialView):
    authentication_classes = (BearerAuthentication,)
    permission_classes = (IsAuthenticatedPrincipal,)


class DrfTokenView(_TrivialView):
    authentication_classes = (TokenAuthentication,)
    permission_classes = (IsAuthenticated,)


class DrfApiKeyView(_TrivialView):
    authentication_classes = ()
    permission_classes = (HasAPIKey,)


class KnoxView(_TrivialView):
    authentication_classes = (KnoxTokenAuthentication,)
    permission_classes = (IsAuthenticated,)


class SimpleJwtView(_TrivialView):
    authentication_classes = (JWTAuthentication,)
    permission_classes = (IsAuthenticated,)


class ScopedView(ProjectScopedView):
    """Our project-scoped base: authentication, project resolution and a permission check."""

    permission_by_method = {"GET": Permission.ANALYSIS_READ}

    def get(self, request):
        return Response({"ok": True})
