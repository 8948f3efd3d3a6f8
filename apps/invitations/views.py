"""Pages: the Invite form of the members page, cancelling, and `/invitations/<token>/`
(which keeps its token in a cookie and redirects to `/invitations/open/`).

The invitation page serves whoever opens the emailed link:

* logged in with the invited email: an "Accept invitation" button;
* logged in as someone else: a way to log out, and nothing about the invitation;
* not logged in: the organization and role, a way to log in (and come back),
  and a short sign-up form for the invited email that lands in the organization.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.html import format_html
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts.emails import normalize_email
from apps.accounts.views import start_page_session, throttled_message
from apps.invitations import services
from apps.invitations.forms import InvitationSignupForm, InviteForm
from apps.invitations.selectors import (
    invitation_for_token,
    membership_from_accepting,
    pending_invitations,
    still_open,
)
from apps.orgs.access import membership_for, require_manager
from apps.orgs.views import members_page
from core.confirm import Confirmation, confirmation_page, is_confirmed
from core.decorators import dashboard_page, origin_only_referrer
from core.errors import NotFound, PermissionDenied, RateLimited, ValidationFailed
from core.token_cookie import TokenCookie


def _members_url(membership) -> str:
    return f"/orgs/{membership.organization_id}/members/"


@dashboard_page
@require_POST
def invite(request: HttpRequest, org_id) -> HttpResponse:
    membership = membership_for(request.principal.user, org_id)
    require_manager(membership)
    form = InviteForm(request.POST, actor_role=membership.role)
    if form.is_valid():
        try:
            invitation = services.invite_member(
                actor_membership=membership,
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
                request=request,
            )
        except ValidationFailed as exc:
            form.add_service_errors(exc.details["fields"], {"email": "email", "role": "role"})
        except PermissionDenied as exc:
            form.add_error("role", exc.message)
        except RateLimited as exc:
            form.add_error(None, throttled_message(exc))
        else:
            messages.success(
                request,
                f"Invitation sent to {invitation.email} as {invitation.get_role_display()}.",
            )
            return redirect(_members_url(membership))
    return members_page(request, membership, extra_context={"invite_form": form})


@dashboard_page
@require_POST
def cancel(request: HttpRequest, org_id, invitation_id) -> HttpResponse:
    membership = membership_for(request.principal.user, org_id)
    require_manager(membership)
    if not is_confirmed(request):
        invitation = pending_invitations(membership).filter(pk=invitation_id).first()
        if invitation is None:
            messages.info(request, "That invitation was no longer pending.")
            return redirect(_members_url(membership))
        request.dashboard_org = membership.organization
        return confirmation_page(
            request,
            Confirmation(
                question=f"Cancel the invitation of {invitation.email}?",
                consequence="Its link stops working. You can invite them again later.",
                action="Cancel invitation",
                cancel_url=_members_url(membership),
                back_label="Members",
                irreversible=False,
            ),
        )
    try:
        services.cancel_invitation(
            actor_membership=membership, invitation_id=invitation_id, request=request
        )
    except NotFound:
        messages.info(request, "That invitation was no longer pending.")
    else:
        messages.success(request, "Invitation cancelled.")
    return redirect(_members_url(membership))


def _invalid(request: HttpRequest) -> HttpResponse:
    return render(request, "invitations/invalid.html", status=404)


#: Where the emailed link sends the browser, its token then in the cookie: a fixed word.
OPEN_PATH = "/invitations/open/"
INVITATION_COOKIE = "ss_invitation"
link_cookie = TokenCookie(INVITATION_COOKIE, "/invitations/", b"sigsentry.invitations.link-cookie")


@require_http_methods(["GET", "HEAD", "POST"])
@origin_only_referrer
def invitation_page(request: HttpRequest, token: str) -> HttpResponse:
    """The emailed link. One that still works is kept in the invitation cookie
    (core.token_cookie, for as long as the invitation lives) and the browser sent on to
    `/invitations/open/`, so the token leaves the address bar, and the way back from
    logging in (`next`) no longer names it. Any other answer is the page's own (joined
    already, no longer valid). A POST here is a page served by the release before."""
    invitation = invitation_for_token(token)
    if request.method == "POST" or not still_open(invitation):
        return _invitation(request, token, invitation)
    response = redirect(OPEN_PATH)
    life = (invitation.expires_at - timezone.now()).total_seconds()
    link_cookie.keep(response, request, token, max(0, int(life)))
    return response


@require_http_methods(["GET", "HEAD", "POST"])
def invitation_open_page(request: HttpRequest) -> HttpResponse:
    """The invitation the cookie holds, as its link showed it. Without a cookie (or with
    one altered) the invalid page; the cookie goes once the page is no longer the
    invitation's: joined (accepted, or signed up) or no longer valid."""
    token = link_cookie.kept(request)
    if token is None:
        response = _invalid(request)
    else:
        response = _invitation(request, token, invitation_for_token(token))
    if response.status_code != 200:
        link_cookie.forget(response)
    return response


def _invitation(request: HttpRequest, token: str, invitation) -> HttpResponse:
    principal = request.principal
    joined = (
        membership_from_accepting(invitation, principal.user)
        if invitation is not None and principal is not None
        else None
    )
    if joined is not None:  # accepted already (a reload, a second click): not "invalid"
        messages.info(
            request,
            format_html("You are a member of <bdi>{}</bdi>.", invitation.organization.name),
        )
        return redirect("/")
    if not still_open(invitation):
        return _invalid(request)
    if principal is not None:
        if normalize_email(principal.user.email) != invitation.normalized_email:
            return render(request, "invitations/other_account.html", {"next": request.path})
        if request.method == "POST":
            try:
                membership = services.accept_invitation(
                    user=principal.user, token=token, request=request
                )
            except NotFound:
                return _invalid(request)
            messages.success(
                request,
                format_html(
                    "You joined <bdi>{}</bdi> as {}.",
                    membership.organization.name,
                    membership.get_role_display(),
                ),
            )
            return redirect("/")
        return render(request, "invitations/accept.html", {"invitation": invitation})
    form = InvitationSignupForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            membership, pair = services.sign_up_and_accept(
                token=token, password=form.cleaned_data["password"], request=request
            )
        except NotFound:
            return _invalid(request)
        except RateLimited as exc:
            form.add_error(None, throttled_message(exc))
        except ValidationFailed as exc:
            fields = exc.details["fields"]
            if "email" in fields:
                form.add_error(None, "An account already uses this email: log in to accept.")
            form.add_service_errors(
                {k: v for k, v in fields.items() if k != "email"}, {"password": "password"}
            )
        else:
            messages.success(
                request,
                format_html(
                    "Welcome! You joined <bdi>{}</bdi> as {}.",
                    membership.organization.name,
                    membership.get_role_display(),
                ),
            )
            return start_page_session(request, pair, "/")
    context = {
        "invitation": invitation,
        "form": form,
        "login_url": "/login/?" + urlencode({"next": request.path}),
    }
    return render(request, "invitations/join.html", context)
