"""The project overview page: its analyses are loaded by static/js/overview.js from /v1."""

from __future__ import annotations

from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_safe

from apps.apikeys.models import ApiKey, KeyType, active_at
from apps.orgs.access import can_manage, project_for_user
from core.decorators import dashboard_page
from core.permissions import ROLE_PERMISSIONS, Permission


@dashboard_page
@require_safe
def overview(request: HttpRequest, project_id) -> HttpResponse:
    project, role = project_for_user(request.principal.user, project_id)
    request.dashboard_project = project
    request.dashboard_org = project.organization
    now = timezone.now()
    active = active_at(now)
    counts = ApiKey.objects.filter(project=project).aggregate(
        sdk=Count("id", filter=active & Q(type=KeyType.PUBLIC)),
        secret=Count("id", filter=active & Q(type=KeyType.SECRET, legacy=False)),
        legacy=Count("id", filter=active & Q(legacy=True)),
    )
    context = {
        "project": project,
        "role": role,
        "can_manage": can_manage(role),
        "can_create_analyses": Permission.ANALYSIS_CREATE in ROLE_PERMISSIONS[role],
        "counts": counts,
        "api_base": request.build_absolute_uri("/v1"),
    }
    return render(request, "projects/overview.html", context)
