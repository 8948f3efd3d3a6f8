"""The key pages' views: Project → SDK Keys, Project → API Keys, Organization → API Keys.

Invariant: a plaintext key is only ever written into the body of the one POST
response that minted it (mint, roll or legacy replacement) — never into the
session, a message, a cookie, a redirect or a log — and that response is
`Cache-Control: no-store`. Each secret-producing form carries a one-time
nonce, so a resubmitted POST (reload, back button, double click) never mints
a second key: it is redirected to the list instead.
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.http import HttpRequest
from django.shortcuts import redirect
from django.template.defaultfilters import pluralize
from django.utils.html import format_html
from django.views.decorators.http import require_http_methods, require_POST

from apps.apikeys import services
from apps.apikeys.forms import (
    SERVICE_FIELDS,
    KeyCreateForm,
    LimitsForm,
    OriginsForm,
    PolicyForm,
    RollForm,
    origins_from_text,
)
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.selectors import Collection
from apps.apikeys.views.page import (
    PAGE_TEXT,
    already_submitted,
    confinable_projects,
    first_message,
    list_address,
    list_state,
    managed_key,
    page_collection,
    render_page,
    row_failed,
)
from apps.orgs import services as org_services
from apps.orgs.access import membership_for
from core.confirm import Confirmation, confirmation_page, is_confirmed, isolated
from core.decorators import dashboard_page
from core.errors import PermissionsLocked, RateLimited, ValidationFailed
from core.nonce import consume_nonce


@dashboard_page
@require_http_methods(["GET", "HEAD", "POST"])
def key_collection(request: HttpRequest, kind: KeyKind, project_id=None, org_id=None):
    """GET: the list (and the create form for owners/admins). POST: mint a key."""
    collection = page_collection(request, kind, project_id, org_id)
    if request.method != "POST":
        return render_page(request, collection)
    collection.require_manager()
    form = KeyCreateForm(request.POST, kind=kind, projects=confinable_projects(collection))
    nonce = consume_nonce(request)
    if nonce == "used":
        return already_submitted(request, collection)
    if nonce == "invalid":
        form.add_error(None, "This form expired. Check the details and submit it again.")
    if nonce == "fresh" and form.is_valid():
        try:
            with collection.managing(request.principal.user):
                minted = services.mint_key(
                    actor=request.principal.user,
                    kind=kind,
                    organization=collection.organization,
                    project=collection.project,
                    request=request,
                    **form.service_arguments(),
                )
        except ValidationFailed as exc:
            form.add_service_errors(exc.details["fields"], SERVICE_FIELDS)
        except (PermissionsLocked, RateLimited) as exc:
            form.add_error(None, exc.message)
        else:
            return render_page(request, collection, minted=minted)
    return render_page(request, collection, form=form)


@dashboard_page
@require_POST
def key_revoke(request: HttpRequest, kind: KeyKind, key_id, project_id=None, org_id=None):
    """Revoke a key, once confirmed (core.confirm): a POST without the marker only asks."""
    collection, api_key = managed_key(request, kind, key_id, project_id, org_id)
    if not is_confirmed(request):
        return confirmation_page(
            request,
            Confirmation(
                question=f"Revoke “{isolated(api_key.name)}” ({api_key.prefix}…)?",
                consequence="Anything using it stops working immediately.",
                action="Revoke key",
                cancel_url=list_address(collection, list_state(request.POST)) + "#keys",
                back_label=PAGE_TEXT[kind]["title"],
                carry=("page", "unused"),  # the list it was on (_list_state.html)
            ),
        )
    with collection.managing(request.principal.user):
        api_key = services.revoke_key(
            actor=request.principal.user, api_key=api_key, request=request
        )
    messages.success(
        request,
        format_html(
            "Revoked “<bdi>{}</bdi>” ({}…). It stopped working.", api_key.name, api_key.prefix
        ),
    )
    return redirect(collection.url)


FORM_EXPIRED = "This form expired; try again."


def _error_fields(exc: ValidationFailed) -> dict[str, list[str]]:
    fields = exc.details.get("fields") if isinstance(exc.details, dict) else None
    return fields or {}


def _mint_from_row(
    request: HttpRequest,
    collection: Collection,
    api_key,
    *,
    how: str,
    mint: Callable[[], services.MintedKey],
    form: RollForm | None = None,
):
    """A row action that mints a successor (roll, replace): one-time nonce, the new key
    shown once. Its errors go on the key's row, or, for a form (Roll), into its dialog,
    reopened with the values as typed; the key itself refused (revoked, rolled meanwhile):
    on the row, as the dialog is gone."""
    nonce = consume_nonce(request)
    if nonce == "used":
        return already_submitted(request, collection)
    if nonce == "invalid":
        if form is None:
            return row_failed(request, collection, api_key, FORM_EXPIRED)
        form.add_error(None, FORM_EXPIRED)
    if form is not None and not form.is_valid():
        return row_failed(request, collection, api_key, roll=form)
    try:
        with collection.managing(request.principal.user):
            minted = mint()
    except ValidationFailed as exc:
        fields = _error_fields(exc)
        if form is None or not fields or "keyId" in fields:
            return row_failed(request, collection, api_key, first_message(exc))
        form.add_service_errors(fields, SERVICE_FIELDS)
        return row_failed(request, collection, api_key, roll=form)
    except RateLimited as exc:
        if form is None:
            return row_failed(request, collection, api_key, first_message(exc))
        form.add_error(None, exc.message)
        return row_failed(request, collection, api_key, roll=form)
    return render_page(request, collection, minted=minted, minted_how=how, previous=api_key)


@dashboard_page
@require_POST
def key_roll(request: HttpRequest, kind: KeyKind, key_id, project_id=None, org_id=None):
    """Mint a successor and show it once; the old key expires after the chosen grace."""
    collection, api_key = managed_key(request, kind, key_id, project_id, org_id)
    form = RollForm.for_key(api_key, data=request.POST)
    return _mint_from_row(
        request,
        collection,
        api_key,
        how="rolled",
        form=form,
        mint=lambda: services.roll_key(
            actor=request.principal.user,
            api_key=api_key,
            grace_seconds=form.cleaned_data["grace_seconds"],
            # Secret and org keys' roll forms send the new key's expiry (empty: none).
            expires_at=form.cleaned_data["expires_at"]
            if "expires_at" in request.POST
            else services.INHERIT,
            request=request,
        ),
    )


@dashboard_page
@require_POST
def key_replace(request: HttpRequest, kind: KeyKind, key_id, project_id=None, org_id=None):
    """A legacy key gets an `ss_secret_` successor, shown once; the legacy key keeps working."""
    collection, api_key = managed_key(request, kind, key_id, project_id, org_id)
    return _mint_from_row(
        request,
        collection,
        api_key,
        how="replaced",
        mint=lambda: services.replace_legacy_key(
            actor=request.principal.user, api_key=api_key, request=request
        ),
    )


@dashboard_page
@require_POST
def key_origins(request: HttpRequest, kind: KeyKind, key_id, project_id=None, org_id=None):
    """An SDK key's allowed origins; refused, the Origins dialog reopens with the text as typed."""
    collection, api_key = managed_key(request, kind, key_id, project_id, org_id)
    form = OriginsForm.for_key(api_key, data=request.POST)
    if form.is_valid():
        origins = origins_from_text(form.cleaned_data["allowed_origins"])
        try:
            with collection.managing(request.principal.user):
                services.update_key(
                    actor=request.principal.user,
                    api_key=api_key,
                    changes={"allowedOrigins": origins},
                    request=request,
                )
        except ValidationFailed as exc:
            fields = _error_fields(exc)
            if not fields or "keyId" in fields:  # revoked or expired meanwhile: no dialog left
                return row_failed(request, collection, api_key, first_message(exc))
            form.add_service_errors(fields, SERVICE_FIELDS)
        except RateLimited as exc:
            form.add_error(None, exc.message)
        else:
            if origins:
                messages.success(
                    request,
                    format_html(
                        "“<bdi>{}</bdi>” now works only from {}.",
                        api_key.name,
                        ", ".join(api_key.allowed_origins),
                    ),
                )
            else:
                messages.success(
                    request, format_html("“<bdi>{}</bdi>” now works from any origin.", api_key.name)
                )
            return redirect(collection.url)
    return row_failed(request, collection, api_key, origins=form)


@dashboard_page
@require_POST
def key_limits(request: HttpRequest, kind: KeyKind, key_id, project_id=None, org_id=None):
    """The "Edit limits" dialog: a key's rate limit, allowed IPs and projects."""
    collection, api_key = managed_key(request, kind, key_id, project_id, org_id)
    form = LimitsForm.for_key(api_key, kind, confinable_projects(collection), data=request.POST)
    if form.is_valid():
        try:
            with collection.managing(request.principal.user):
                services.update_key(
                    actor=request.principal.user,
                    api_key=api_key,
                    changes=form.guardrail_changes(),
                    request=request,
                )
        except ValidationFailed as exc:
            if "keyId" in exc.details["fields"]:  # revoked or expired meanwhile: no dialog left
                return row_failed(request, collection, api_key, first_message(exc))
            form.add_service_errors(exc.details["fields"], SERVICE_FIELDS)
        except RateLimited as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(
                request, format_html("Saved the limits of “<bdi>{}</bdi>”.", api_key.name)
            )
            return redirect(collection.url)
    return row_failed(request, collection, api_key, limits=form)


@dashboard_page
@require_POST
def key_policy(request: HttpRequest, org_id):
    """Owners set the organization's key lifetime policy (Organization → API Keys)."""
    collection = page_collection(request, KeyKind.ORGANIZATION, org_id=org_id)
    membership = membership_for(request.principal.user, org_id)
    org_services.require_owner(membership)
    form = PolicyForm(request.POST)
    if form.is_valid():
        days = form.cleaned_data["key_max_lifetime_days"]
        try:
            org_services.set_key_lifetime_policy(
                actor_membership=membership, days=days, request=request
            )
        except ValidationFailed as exc:
            form.add_service_errors(
                exc.details["fields"], {"keyMaxLifetimeDays": "key_max_lifetime_days"}
            )
        else:
            if days:
                messages.success(
                    request,
                    f"New secret and organization keys must now expire within {days} "
                    f"day{pluralize(days)}.",
                )
            else:
                messages.success(request, "Keys may again be created without an expiry.")
            return redirect(collection.url)
    return render_page(request, collection, policy_form=form)
