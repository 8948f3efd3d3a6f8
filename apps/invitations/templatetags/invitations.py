"""The members page's Invite form and pending invitations (`{% load invitations %}`).

The members page belongs to apps/orgs, which cannot import this app (it sits
above orgs in the one-way house); its template pulls these panels in by name.
Both show to owners and admins only.
"""

from __future__ import annotations

from django import template
from django.core.paginator import Paginator

from apps.invitations.forms import InviteForm
from apps.invitations.selectors import pending_invitations
from apps.orgs.access import can_manage

register = template.Library()

#: Pending invitations per page of the members page's list: an organization can send 50
#: an hour, each living 7 days (~8,400 pending), and 2,000 of them made a 2.4 MB page.
INVITATIONS_PER_PAGE = 50
#: The list's own page number in the query, beside the members list's `page`.
PAGE_PARAMETER = "invitations_page"


@register.inclusion_tag("invitations/_invite_form.html", takes_context=True)
def invite_form(context) -> dict:
    membership = context["membership"]
    if not can_manage(membership.role):
        return {"show": False}
    return {
        "show": True,
        "organization": membership.organization,
        "form": context.get("invite_form") or InviteForm(actor_role=membership.role),
        "csrf_token": context.get("csrf_token"),
    }


@register.inclusion_tag("invitations/_pending.html", takes_context=True)
def pending_invitations_list(context) -> dict:
    membership = context["membership"]
    if not can_manage(membership.role):
        return {"show": False}
    request = context.get("request")
    number = request.GET.get(PAGE_PARAMETER) if request is not None else None
    page = Paginator(pending_invitations(membership), INVITATIONS_PER_PAGE).get_page(number)
    members_page = context.get("page")
    members_number = getattr(members_page, "number", 1)
    return {
        "show": True,
        "organization": membership.organization,
        "pending": list(page),
        "pending_page": page,
        # Its links keep the members list on the page it shows.
        "members_query": f"page={members_number}&" if members_number > 1 else "",
        "csrf_token": context.get("csrf_token"),
    }
