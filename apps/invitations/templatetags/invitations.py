"""The members page's Invite form and pending invitations (`{% load invitations %}`).

The members page belongs to apps/orgs, which cannot import this app (it sits
above orgs in the one-way house); its template pulls these panels in by name.
Both show to owners and admins only.
"""

from __future__ import annotations

from django import template

from apps.invitations.forms import InviteForm
from apps.invitations.selectors import pending_invitations
from apps.orgs.access import can_manage

register = template.Library()


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
    return {
        "show": True,
        "organization": membership.organization,
        "pending": list(pending_invitations(membership)),
        "csrf_token": context.get("csrf_token"),
    }
