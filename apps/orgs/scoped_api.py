"""The base of every project-scoped `/v1` view (SPEC §2.1, §2.2, §4.10).

`ProjectScopedView` resolves the project from the credential and `X-Project-Id`,
then checks the method's permission, both through `apps.orgs.access`, the one
place that decides. It lives here, not in the core, so that the core imports no
app and the views import the policy they use; the views that subclass it
(analyses, project configuration) sit above `apps/orgs`.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter

from apps.orgs.access import require_permission, resolve_project
from apps.projects.selectors import ProjectRecord
from core.api import ApiView
from core.errors import PermissionDenied
from core.openapi import error_responses
from core.validation import UUID_PATTERN

#: The `request.META` key (a WSGI environ extension) naming the project a request acted on
#: (`apps.apikeys.middleware` records it as an organization key's last project).
PROJECT_ID = "sigsentry.project_id"

PROJECT_HEADER = OpenApiParameter(
    "X-Project-Id",
    # Text with a UUID's pattern, not `format: uuid`: a header is text, and a generated
    # client typed it `UUID` and refused to send one (an SDK audit: openapi-python-client).
    {"type": "string", "pattern": UUID_PATTERN, "example": "0b7c9f1e-4d2a-4c8e-9a51-2f3b6d7e8a90"},
    OpenApiParameter.HEADER,
    description="The project's id; required for organization keys and dashboard sessions.",
)
#: What any project-scoped operation can answer besides success (SPEC §3).
PROJECT_ERRORS = error_responses(400, 401, 403, 404, 429)


class ProjectScopedView(ApiView):
    """Subclasses map each method to the permission it needs (SPEC §2.2).

    In SPEC §4.10's order: the project is resolved in `check_permissions` (which
    DRF runs right after authentication), the key's own rate limit is DRF's
    throttle step, and the method's permission is checked last.
    HEAD runs the GET handler (Django), so it needs GET's permission; so does OPTIONS.
    """

    permission_by_method: dict[str, str] = {}
    #: The project the request acts on, once `check_permissions` resolved it.
    project: ProjectRecord | None = None

    def check_permissions(self, request):
        super().check_permissions(request)
        self.project = resolve_project(self.principal, request.META.get("HTTP_X_PROJECT_ID"))
        # For what runs after the response (an org key's last use names its project).
        request.META[PROJECT_ID] = self.project.id

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        required = self._permission_for(request.method)
        if required is not None:
            require_permission(self.principal, self.project, required)
        elif hasattr(self, request.method.lower()):
            # Fail closed: a handler whose permission was never declared serves nobody.
            raise PermissionDenied(PermissionDenied.UNDECLARED, PermissionDenied.message)

    def _permission_for(self, method: str) -> str | None:
        """HEAD runs GET; OPTIONS (a view's description, not a CORS preflight, which the
        middleware answers) needs GET's permission, or a write-only view's first one."""
        declared = self.permission_by_method
        if method == "OPTIONS":
            return declared.get("GET") or next(iter(declared.values()), None)
        return declared.get("GET" if method == "HEAD" else method)
