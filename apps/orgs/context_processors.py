"""Sidebar data for dashboard pages: the organization and project switchers.

Built lazily (only when a template reads `nav`) and at most once per request,
in two queries whatever the number of organizations and projects, so error
pages that never show a sidebar touch no database at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from apps.orgs.access import can_manage
from apps.orgs.models import Membership, Organization
from apps.projects.models import Project


@dataclass
class OrgEntry:
    organization: Organization
    role: str
    projects: list[Project] = field(default_factory=list)

    @property
    def can_manage(self) -> bool:
        return can_manage(self.role)

    @property
    def landing_url(self) -> str:
        if self.projects:
            return f"/projects/{self.projects[0].id}/"
        return f"/orgs/{self.organization.id}/api-keys/"


#: A key page's own URL names (a key's detail page, its actions) and the sidebar entry of
#: its collection; the most specific prefix first (`apps/apikeys/urls.py`).
_KEY_SECTIONS = (("org-api-key", "org-api-keys"), ("sdk-key", "sdk-keys"), ("api-key", "api-keys"))


def section_of(url_name: str) -> str:
    """The sidebar entry a page belongs to: a key's page or a row action's answer is
    under its collection."""
    for prefix, section in _KEY_SECTIONS:
        if url_name.startswith(prefix):
            return section
    return url_name


@dataclass
class Nav:
    email: str
    orgs: list[OrgEntry]
    current: OrgEntry | None
    project: Project | None
    #: The sidebar entry of the page (`section_of` its URL name).
    url_name: str


def dashboard_nav(request) -> Nav:
    """The caller's organizations with their projects, and what the page is about."""
    cached = getattr(request, "dashboard_nav_cache", None)
    if cached is not None:
        return cached
    user = request.principal.user
    memberships = (
        Membership.objects.filter(user=user)
        .select_related("organization")
        .order_by("organization__name", "organization__id")
    )
    orgs = {m.organization_id: OrgEntry(m.organization, m.role) for m in memberships}
    for project in Project.objects.filter(organization_id__in=list(orgs)).order_by("name", "id"):
        orgs[project.organization_id].projects.append(project)
    project = getattr(request, "dashboard_project", None)
    org = getattr(request, "dashboard_org", None)
    current_id = org.id if org is not None else (project.organization_id if project else None)
    current = orgs.get(current_id) if current_id else next(iter(orgs.values()), None)
    match = getattr(request, "resolver_match", None)
    nav = Nav(
        email=user.email,
        orgs=list(orgs.values()),
        current=current,
        project=project,
        url_name=section_of(match.url_name or "") if match else "",
    )
    request.dashboard_nav_cache = nav
    return nav
