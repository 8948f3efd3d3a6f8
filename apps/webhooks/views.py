"""Organization → Webhooks: add, remove, re-enable, and recent deliveries (owners, admins).

The signing secret appears once, in the body of the POST response that created
the webhook (`Cache-Control: no-store`); a one-time nonce stops a resubmitted
form from creating a second webhook.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from apps.orgs.access import as_manager, membership_for, require_manager
from apps.orgs.models import Organization
from apps.webhooks import services
from apps.webhooks.models import EventType
from apps.webhooks.selectors import recent_deliveries_of, webhook_of, webhooks_of
from apps.webhooks.urlsafety import allow_private
from core.confirm import Confirmation, confirmation_page, is_confirmed
from core.decorators import dashboard_page
from core.errors import RateLimited, ValidationFailed
from core.nonce import consume_nonce, issue_nonce

RECENT_DELIVERIES = 10

EVENT_HELP = {
    EventType.KEY_MINTED: "a key was created",
    EventType.KEY_REVOKED: "a key was revoked",
    EventType.KEY_ROLLED: "a key was rolled (the new key)",
    EventType.KEY_UPDATED: "a key's settings changed",
    EventType.KEY_REVOKED_BY_LEAK_REPORT: "a secret key was revoked by a leak report",
    EventType.KEY_LEAK_REPORTED: "an SDK key was reported leaked",
    EventType.KEY_EXPIRING: "a key expires in 7 days or 1 day",
    EventType.KEY_UNUSED: "a key was unused for 90 days",
}


def _organization(request: HttpRequest, org_id) -> Organization:
    """404 for outsiders, 403 for members without rights (as every organization page)."""
    membership = membership_for(request.principal.user, org_id)
    request.dashboard_org = membership.organization
    return require_manager(membership)


def _page(request: HttpRequest, organization: Organization, **context) -> HttpResponse:
    hooks = list(webhooks_of(organization.id))
    recent = recent_deliveries_of(hooks, RECENT_DELIVERIES)
    rows = [(hook, recent[hook.pk]) for hook in hooks]
    chosen = context.pop("chosen_events", list(EventType.values))
    response = render(
        request,
        "webhooks/webhooks.html",
        {
            "organization": organization,
            "rows": rows,
            "events": [(e, EVENT_HELP[e], e in chosen) for e in EventType.values],
            "nonce": issue_nonce(request),
            "base_url": f"/orgs/{organization.id}/webhooks/",
            "private_allowed": allow_private(),  # development: say so, not the production rule
            **context,
        },
    )
    response["Cache-Control"] = "no-store"
    return response


@dashboard_page
@require_http_methods(["GET", "HEAD", "POST"])
def webhooks_page(request: HttpRequest, org_id) -> HttpResponse:
    organization = _organization(request, org_id)
    if request.method != "POST":
        return _page(request, organization)
    url = request.POST.get("url", "")
    events = request.POST.getlist("events")
    nonce = consume_nonce(request)
    if nonce == "used":
        messages.info(request, "That form was already submitted, so nothing new was created.")
        return redirect(f"/orgs/{organization.id}/webhooks/")
    if nonce == "invalid":
        return _page(
            request, organization, url=url, chosen_events=events, errors=["This form expired."]
        )
    try:
        checked = services.checked_webhook_input(
            actor=request.principal.user, url=url, events=events
        )
        with as_manager(request.principal.user, organization.id):
            created = services.insert_webhook(
                actor=request.principal.user,
                organization=organization,
                checked=checked,
                request=request,
            )
    except RateLimited as exc:
        return _page(request, organization, url=url, chosen_events=events, errors=[exc.message])
    except ValidationFailed as exc:
        fields = exc.details.get("fields", {})
        return _page(
            request,
            organization,
            url=url,
            chosen_events=events,
            url_errors=fields.get("url", []),
            event_errors=fields.get("events", []),
        )
    return _page(request, organization, created=created)


@dashboard_page
@require_POST
def delete_webhook(request: HttpRequest, org_id, webhook_id) -> HttpResponse:
    organization = _organization(request, org_id)
    webhook = webhook_of(organization.id, webhook_id)
    if not is_confirmed(request):
        return confirmation_page(
            request,
            Confirmation(
                question=f"Remove the webhook to {webhook.url}?",
                consequence=f"Nothing more will be sent to {webhook.url}, "
                "and its signing secret and recent deliveries are deleted.",
                action="Remove webhook",
                cancel_url=f"/orgs/{organization.id}/webhooks/",
                back_label="Webhooks",
            ),
        )
    with as_manager(request.principal.user, organization.id):
        services.delete_webhook(actor=request.principal.user, webhook=webhook, request=request)
    messages.success(request, f"The webhook to {webhook.url_host} was removed.")
    return redirect(f"/orgs/{organization.id}/webhooks/")


@dashboard_page
@require_POST
def enable_webhook(request: HttpRequest, org_id, webhook_id) -> HttpResponse:
    organization = _organization(request, org_id)
    webhook = webhook_of(organization.id, webhook_id)
    with as_manager(request.principal.user, organization.id):
        services.enable_webhook(actor=request.principal.user, webhook=webhook, request=request)
    messages.success(request, f"The webhook to {webhook.url_host} is enabled again.")
    return redirect(f"/orgs/{organization.id}/webhooks/")
