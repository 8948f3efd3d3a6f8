"""Sidebar data for dashboard pages: the organization and project switchers.

Built lazily (only when a template reads `nav`) and at most once per request,
in two queries whatever the number of organizations and projects, so error
pages that never show a sidebar touch no database at all. Only the current
organization's projects are read, the first `NAV_PROJECTS` by name; of the others
only what their switcher link needs, their first project (loading every project of
every organization cost 23 ms on every page with 1,346 of them, a large-tenant audit).
The organization switcher lists the first `NAV_ORGS` organizations by name and the current
one; its "All organizations" link pages through the rest (a user in 200 organizations
carried all 200 in every page, 35 KB, and the home page was 564 KB: a large-tenant audit).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from django.db.models import OuterRef, Q, Subquery

from apps.orgs.access import can_manage
from apps.orgs.models import Membership, Organization
from apps.projects.models import Project
from apps.projects.selectors import projects_by_name

#: The current organization's projects the project switcher lists, by name; a link to the
#: organization's list on the home page (`/?org=`) leads to the rest.
NAV_PROJECTS = 50
#: The organizations the switcher lists, by name (and the current one, wherever it sorts);
#: the home page lists them this many at a time too.
NAV_ORGS = 20
#: The order of the switcher and of the home page's organizations.
BY_ORGANIZATION = ("organization__name", "organization__id")


@dataclass
class OrgEntry:
    organization: Organization
    role: str
    #: Its first project by name (None: it has none yet), where its switcher link lands.
    first_project_id: uuid.UUID | None = None
    #: The current organization's first `NAV_PROJECTS` projects by name; empty for the others.
    projects: list[Project] = field(default_factory=list)
    #: Whether it has projects past `projects` (read for the current organization only).
    more_projects: bool = False
    #: Whether the caller's organizations fill more than one home page.
    paged: bool = False

    @property
    def can_manage(self) -> bool:
        return can_manage(self.role)

    @property
    def landing_url(self) -> str:
        if self.first_project_id is not None:
            return f"/projects/{self.first_project_id}/"
        return f"/orgs/{self.organization.id}/api-keys/"

    @property
    def projects_url(self) -> str:
        """The organization's whole list of projects, a page at a time (the home page)."""
        return f"/?org={self.organization.id}"

    @property
    def new_project_url(self) -> str:
        """The home page's form that creates a project here: on the one page that lists every
        organization, else on this organization's own list."""
        anchor = f"#new-project-{self.organization.id}"
        return f"{self.projects_url}{anchor}" if self.paged else f"/{anchor}"


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
    #: The first `NAV_ORGS` organizations by name, and the current one if it sorts later.
    orgs: list[OrgEntry]
    current: OrgEntry | None
    project: Project | None
    #: The sidebar entry of the page (`section_of` its URL name).
    url_name: str


def dashboard_nav(request) -> Nav:
    """The caller's organizations, the current one's first projects, and what the page is
    about."""
    cached = getattr(request, "dashboard_nav_cache", None)
    if cached is not None:
        return cached
    user = request.principal.user
    project = getattr(request, "dashboard_project", None)
    org = getattr(request, "dashboard_org", None)
    current_id = org.id if org is not None else (project.organization_id if project else None)
    first_project = projects_by_name(OuterRef("organization_id"))
    # One query: the first NAV_ORGS + 1 (the last only tells that there are more) and the
    # current one, which sorts after them if it is not among them.
    first = Membership.objects.filter(user=user).order_by(*BY_ORGANIZATION).values("id")
    listed = Q(id__in=first[: NAV_ORGS + 1])
    if current_id is not None:
        listed |= Q(organization_id=current_id)
    memberships = list(
        Membership.objects.filter(listed, user=user)
        .select_related("organization")
        .annotate(first_project_id=Subquery(first_project.values("id")[:1]))
        .order_by(*BY_ORGANIZATION)
    )
    paged = len(memberships) > NAV_ORGS
    orgs = {
        m.organization_id: OrgEntry(m.organization, m.role, m.first_project_id, paged=paged)
        for m in memberships
    }
    current = orgs.get(current_id) if current_id else next(iter(orgs.values()), None)
    shown = list(orgs.values())[:NAV_ORGS]
    if current is not None and current not in shown:
        shown.append(current)
    if current is not None and current.first_project_id is not None:
        listed = list(projects_by_name(current.organization.id)[: NAV_PROJECTS + 1])
        current.projects = listed[:NAV_PROJECTS]
        current.more_projects = len(listed) > NAV_PROJECTS
    match = getattr(request, "resolver_match", None)
    nav = Nav(
        email=user.email,
        orgs=shown,
        current=current,
        project=project,
        url_name=section_of(match.url_name or "") if match else "",
    )
    request.dashboard_nav_cache = nav
    return nav
