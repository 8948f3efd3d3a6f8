"""Pages: the organizations overview (`/`) and members of an organization."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.html import format_html
from django.views.decorators.http import require_POST, require_safe

from apps.orgs import selectors, services
from apps.orgs.access import as_manager, can_manage, membership_for, require_manager
from apps.orgs.context_processors import BY_ORGANIZATION, NAV_ORGS, OrgEntry, dashboard_nav
from apps.orgs.forms import MemberRoleForm, ProjectForm, role_choices
from apps.orgs.models import Membership
from apps.projects import selectors as project_selectors
from apps.projects import services as project_services
from core.confirm import Confirmation, confirmation_page, is_confirmed, isolated
from core.decorators import dashboard_page
from core.errors import ApiError, RateLimited, ValidationFailed
from core.permissions import Role

MEMBERS_PER_PAGE = 50
#: Projects of each organization the home page shows; its "All … projects" link pages the rest.
HOME_PROJECTS_PER_ORG = 12
HOME_PROJECTS_PER_PAGE = 50


def _page_number(request: HttpRequest) -> str | None:
    """The members page a request is on: its query's, or its form's (a role change or a
    removal posts the page it was on, and comes back to it)."""
    return request.POST.get("page") or request.GET.get("page")


def _members_url(organization_id, request: HttpRequest) -> str:
    number = request.POST.get("page", "")
    query = f"?page={number}" if number.isascii() and number.isdigit() and number != "1" else ""
    return f"/orgs/{organization_id}/members/{query}"


@dashboard_page
@require_safe
def home(request: HttpRequest) -> HttpResponse:
    return _render_home(request)


def _render_home(request: HttpRequest, failed_org=None, failed_form=None) -> HttpResponse:
    """The caller's organizations, `NAV_ORGS` at a time by name, each with its first
    `HOME_PROJECTS_PER_ORG` projects and their number; `?org=` one organization with all its
    projects, a page at a time. Listing every project of every organization made a page of
    50 organizations and 1,344 projects 669 KB, and every organization of a user in 200
    564 KB (large-tenant audits). A project form sent back with errors shows the page of
    its organization."""
    only = request.GET.get("org") if failed_org is None else None
    if only:
        request.dashboard_org = membership_for(request.principal.user, only).organization
    nav = dashboard_nav(request)
    orgs_page = None
    if only:
        entries = [nav.current]
    else:
        memberships = (
            Membership.objects.filter(user=request.principal.user)
            .select_related("organization")
            .order_by(*BY_ORGANIZATION)
        )
        number = (
            _page_of_organization(memberships, failed_org)
            if failed_org is not None
            else request.GET.get("page")
        )
        orgs_page = Paginator(memberships, NAV_ORGS).get_page(number)
        entries = [OrgEntry(m.organization, m.role) for m in orgs_page]
    org_ids = [entry.organization.id for entry in entries]
    page = None
    if only:
        projects = project_selectors.projects_by_name(org_ids[0])
        page = Paginator(projects, HOME_PROJECTS_PER_PAGE).get_page(request.GET.get("page"))
        shown = {org_ids[0]: list(page)}
        counts = {org_ids[0]: page.paginator.count}
    else:
        shown = project_selectors.first_projects_by_name(org_ids, HOME_PROJECTS_PER_ORG)
        counts = project_selectors.project_counts(org_ids)
    sections = [
        {
            "entry": entry,
            "projects": shown.get(entry.organization.id, []),
            "project_count": counts.get(entry.organization.id, 0),
            "form": failed_form if entry.organization == failed_org else ProjectForm(),
        }
        for entry in entries
    ]
    context = {
        "sections": sections,
        "only": nav.current if only else None,
        "page": page,
        "orgs_page": orgs_page,
    }
    return render(request, "orgs/home.html", context)


def _page_of_organization(memberships, organization) -> int:
    """The home page (of `NAV_ORGS`) that lists `organization` among `memberships`."""
    before = memberships.filter(
        Q(organization__name__lt=organization.name)
        | Q(organization__name=organization.name, organization__id__lt=organization.id)
    ).count()
    return before // NAV_ORGS + 1


@dashboard_page
@require_POST
def create_project(request: HttpRequest, org_id) -> HttpResponse:
    membership = membership_for(request.principal.user, org_id)
    organization = require_manager(membership)
    form = ProjectForm(request.POST)
    if form.is_valid():
        try:
            with as_manager(request.principal.user, organization.id):
                project = project_services.create_project(
                    actor=request.principal.user,
                    organization=organization,
                    name=form.cleaned_data["name"],
                    request=request,
                )
        except ValidationFailed as exc:
            form.add_service_errors(exc.details["fields"], {"name": "name"})
        except RateLimited as exc:
            form.add_error("name", exc.message)
        else:
            messages.success(request, format_html("Project “<bdi>{}</bdi>” created.", project.name))
            return redirect(f"/projects/{project.id}/")
    return _render_home(request, failed_org=organization, failed_form=form)


def members_page(
    request: HttpRequest,
    membership: Membership,
    *,
    row_errors: dict | None = None,
    extra_context: dict | None = None,
) -> HttpResponse:
    """The members page. Apps above this one add to it through `extra_context`
    (the invitations panel reads its failed form from there)."""
    request.dashboard_org = membership.organization
    # A page of them, in the database's order (owners first, then by address): an
    # organization of 3,000 members was a 6.6 MB page (a pages audit). A refused change
    # shows the page its form was on.
    ordered = selectors.members_by_role(membership)
    page = Paginator(ordered, MEMBERS_PER_PAGE).get_page(_page_number(request))
    members = list(page)
    manager = can_manage(membership.role)
    # The one owner who keeps the organization can neither leave nor change role (409
    # LAST_OWNER): their row says so instead of offering both (found by a UX review: a new
    # sign-up's Leave failed, its error under the role). Counted only when a page shows one.
    sole_owner = None
    if manager and any(m.role == Role.OWNER and m.user.is_active for m in members):
        owners = list(
            selectors.active_owners(membership.organization_id).values_list("user_id", flat=True)[
                :2
            ]
        )
        sole_owner = owners[0] if len(owners) == 1 else None
    rows = [
        {
            "membership": m,
            "is_self": m.user_id == membership.user_id,
            "sole_owner": m.user_id == sole_owner,
            # Admins manage members and admins, never owners.
            "editable": manager
            and m.user_id != sole_owner
            and (membership.role == Role.OWNER or m.role != Role.OWNER),
            "error": (row_errors or {}).get(m.user_id),
        }
        for m in members
    ]
    context = {
        "membership": membership,
        "organization": membership.organization,
        "my_role": membership.role,
        "can_manage": manager,
        "rows": rows,
        "page": page,
        "role_choices": role_choices(membership.role),
        **(extra_context or {}),
    }
    return render(request, "orgs/members.html", context)


@dashboard_page
@require_safe
def members(request: HttpRequest, org_id) -> HttpResponse:
    return members_page(request, membership_for(request.principal.user, org_id))


@dashboard_page
@require_POST
def member_role(request: HttpRequest, org_id, user_id) -> HttpResponse:
    membership = membership_for(request.principal.user, org_id)
    require_manager(membership)
    target = selectors.member_of(membership, user_id)
    form = MemberRoleForm(request.POST)
    if not form.is_valid():
        return members_page(request, membership, row_errors={target.user_id: "Choose a role."})
    try:
        changed = services.change_member_role(
            actor_membership=membership,
            target=target,
            role=form.cleaned_data["role"],
            request=request,
        )
    except ApiError as exc:
        return members_page(request, membership, row_errors={target.user_id: exc.message})
    messages.success(request, f"{changed.user.email} is now {changed.get_role_display()}.")
    return redirect(_members_url(membership.organization_id, request))


def _removal(membership: Membership, target: Membership) -> Confirmation:
    organization = membership.organization
    if target.user_id == membership.user_id:
        question = f"Leave {isolated(organization.name)}?"
        consequence = "You will lose access to its projects and keys."
        action = "Leave organization"
    else:
        question = f"Remove {target.user.email} from {isolated(organization.name)}?"
        consequence = "They lose access to its projects and keys at once."
        action = "Remove member"
    return Confirmation(
        question=question,
        consequence=consequence,
        action=action,
        cancel_url=f"/orgs/{organization.id}/members/",
        back_label="Members",
        irreversible=False,
        carry=("page",),  # back to the page the member was on
    )


@dashboard_page
@require_POST
def remove_member(request: HttpRequest, org_id, user_id) -> HttpResponse:
    membership = membership_for(request.principal.user, org_id)
    require_manager(membership)
    target = selectors.member_of(membership, user_id)
    if not is_confirmed(request):
        request.dashboard_org = membership.organization
        return confirmation_page(request, _removal(membership, target))
    try:
        services.remove_member(actor_membership=membership, target=target, request=request)
    except ApiError as exc:
        return members_page(request, membership, row_errors={target.user_id: exc.message})
    if target.user_id == membership.user_id:
        messages.success(
            request, format_html("You left <bdi>{}</bdi>.", membership.organization.name)
        )
        return redirect("/")
    messages.success(request, f"{target.user.email} was removed.")
    return redirect(_members_url(membership.organization_id, request))
