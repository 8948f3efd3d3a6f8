"""The project overview page: its analyses are loaded by static/js/overview.js from /v1."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_safe

from apps.apikeys.selectors import active_key_counts
from apps.orgs.access import can_manage, project_for_user
from core.decorators import dashboard_page
from core.permissions import ROLE_PERMISSIONS, Permission


@dashboard_page
@require_safe
def overview(request: HttpRequest, project_id) -> HttpResponse:
    project, role = project_for_user(request.principal.user, project_id)
    request.dashboard_project = project
    request.dashboard_org = project.organization
    context = {
        "project": project,
        "role": role,
        "can_manage": can_manage(role),
        "can_create_analyses": Permission.ANALYSIS_CREATE in ROLE_PERMISSIONS[role],
        "counts": active_key_counts(project, timezone.now()),
        "api_base": request.build_absolute_uri("/v1"),
    }
    return render(request, "projects/overview.html", context)
