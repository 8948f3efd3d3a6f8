"""Pages: the organizations overview (`/`) and members of an organization."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST, require_safe

from apps.orgs import services
from apps.orgs.access import as_manager, can_manage, membership_for, require_manager
from apps.orgs.context_processors import dashboard_nav
from apps.orgs.forms import MemberRoleForm, ProjectForm, role_choices
from apps.orgs.models import Membership
from apps.projects import services as project_services
from core.confirm import Confirmation, confirmation_page, is_confirmed
from core.decorators import dashboard_page
from core.errors import ApiError, NotFound, ValidationFailed
from core.permissions import Role

#: Owners first, then by decreasing rights.
ROLE_ORDER = {Role.OWNER: 0, Role.ADMIN: 1, Role.MEMBER: 2, Role.VIEWER: 3}


@dashboard_page
@require_safe
def home(request: HttpRequest) -> HttpResponse:
    return _render_home(request)


def _render_home(request: HttpRequest, failed_org=None, failed_form=None) -> HttpResponse:
    nav = dashboard_nav(request)
    sections = [
        {
            "entry": entry,
            "form": failed_form if entry.organization == failed_org else ProjectForm(),
        }
        for entry in nav.orgs
    ]
    return render(request, "orgs/home.html", {"sections": sections})


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
        else:
            messages.success(request, f"Project “{project.name}” created.")
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
    members = sorted(
        Membership.objects.filter(organization=membership.organization).select_related("user"),
        key=lambda m: (ROLE_ORDER.get(m.role, 9), m.user.email),
    )
    manager = can_manage(membership.role)
    rows = [
        {
            "membership": m,
            "is_self": m.user_id == membership.user_id,
            # Admins manage members and admins, never owners.
            "editable": manager and (membership.role == Role.OWNER or m.role != Role.OWNER),
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
        "role_choices": role_choices(membership.role),
        **(extra_context or {}),
    }
    return render(request, "orgs/members.html", context)


@dashboard_page
@require_safe
def members(request: HttpRequest, org_id) -> HttpResponse:
    return members_page(request, membership_for(request.principal.user, org_id))


def _target(membership: Membership, user_id) -> Membership:
    target = (
        Membership.objects.select_related("user", "organization")
        .filter(organization_id=membership.organization_id, user_id=user_id)
        .first()
    )
    if target is None:
        raise NotFound()
    return target


@dashboard_page
@require_POST
def member_role(request: HttpRequest, org_id, user_id) -> HttpResponse:
    membership = membership_for(request.principal.user, org_id)
    require_manager(membership)
    target = _target(membership, user_id)
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
    return redirect(f"/orgs/{membership.organization_id}/members/")


def _removal(membership: Membership, target: Membership) -> Confirmation:
    organization = membership.organization
    if target.user_id == membership.user_id:
        question = f"Leave {organization.name}?"
        consequence = "You will lose access to its projects and keys."
        action = "Leave organization"
    else:
        question = f"Remove {target.user.email} from {organization.name}?"
        consequence = "They lose access to its projects and keys at once."
        action = "Remove member"
    return Confirmation(
        question=question,
        consequence=consequence,
        action=action,
        cancel_url=f"/orgs/{organization.id}/members/",
        back_label="Members",
        irreversible=False,
    )


@dashboard_page
@require_POST
def remove_member(request: HttpRequest, org_id, user_id) -> HttpResponse:
    membership = membership_for(request.principal.user, org_id)
    require_manager(membership)
    target = _target(membership, user_id)
    if not is_confirmed(request):
        request.dashboard_org = membership.organization
        return confirmation_page(request, _removal(membership, target))
    try:
        services.remove_member(actor_membership=membership, target=target, request=request)
    except ApiError as exc:
        return members_page(request, membership, row_errors={target.user_id: exc.message})
    if target.user_id == membership.user_id:
        messages.success(request, f"You left {membership.organization.name}.")
        return redirect("/")
    messages.success(request, f"{target.user.email} was removed.")
    return redirect(f"/orgs/{membership.organization_id}/members/")
