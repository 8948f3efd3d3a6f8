"""Key pages: Project → SDK Keys, Project → API Keys, Organization → API Keys.

Invariant: a plaintext key is only ever written into the body of the one POST
response that minted it (mint, roll or legacy replacement) — never into the
session, a message, a cookie, a redirect or a log — and that response is
`Cache-Control: no-store`. Each secret-producing form carries a one-time
nonce, so a resubmitted POST (reload, back button, double click) never mints
a second key: it is redirected to the list instead.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.core import signing
from django.core.cache import cache
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from apps.apikeys import services, usage_views
from apps.apikeys.charts import Chart
from apps.apikeys.forms import (
    GRACE_CHOICES,
    SERVICE_FIELDS,
    KeyCreateForm,
    OriginsForm,
    RollForm,
    origins_from_text,
)
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey, KeyStatus
from apps.apikeys.selectors import Collection, collection_for, legacy_keys_in_scope
from core.decorators import dashboard_page
from core.errors import (
    ApiError,
    PermissionsLocked,
    RateLimited,
    ValidationFailed,
)

logger = logging.getLogger("sigsentry.dashboard")

PER_PAGE = 50
EXPIRING_WITHIN = timedelta(days=7)
RECENT_LEGACY_SHOWN = 5
NONCE_SALT = "sigsentry.dashboard.secret-form"
NONCE_MAX_AGE = 12 * 3600


def _collection(request: HttpRequest, kind: KeyKind, project_id=None, org_id=None) -> Collection:
    """The collection named by the URL (404 for anyone outside its organization); the
    page's sidebar shows where it is."""
    collection = collection_for(request.principal.user, kind, project_id=project_id, org_id=org_id)
    request.dashboard_org = collection.organization
    request.dashboard_project = collection.project
    return collection


def _managed_key(
    request: HttpRequest, kind: KeyKind, key_id, project_id=None, org_id=None
) -> tuple[Collection, ApiKey]:
    """For a row action: the collection (404 outside it), a manager's role (403), the key (404)."""
    collection = _collection(request, kind, project_id, org_id).require_manager()
    return collection, collection.key(key_id)


# One-time form nonces -------------------------------------------------------


def issue_nonce(request: HttpRequest) -> str:
    """A signed, user-bound random token for one secret-producing submission."""
    payload = {"u": str(request.principal.user.pk), "n": secrets.token_urlsafe(16)}
    return signing.dumps(payload, salt=NONCE_SALT)


def consume_nonce(request: HttpRequest) -> str:
    """`fresh` exactly once per issued nonce; then `used`. `invalid` if forged or stale.

    The first use is claimed with `cache.add`, which is atomic (one of two
    concurrent submissions wins) and shared by every process when the cache
    is Redis. If the cache is unreachable the submission counts as fresh: the
    worst case is a duplicate key, never a key shown twice.
    """
    try:
        payload = signing.loads(
            request.POST.get("nonce", ""), salt=NONCE_SALT, max_age=NONCE_MAX_AGE
        )
    except signing.BadSignature:
        return "invalid"
    if not isinstance(payload, dict) or payload.get("u") != str(request.principal.user.pk):
        return "invalid"
    try:
        claimed = cache.add(f"dashboard:nonce:{payload['n']}", 1, timeout=NONCE_MAX_AGE + 60)
    except Exception:
        logger.warning("nonce cache unavailable; treating the submission as fresh")
        return "fresh"
    return "fresh" if claimed else "used"


def _already_submitted(request: HttpRequest, collection: Collection) -> HttpResponse:
    messages.info(
        request,
        "That form was already submitted, so nothing new was created. "
        "A key is shown only once; if you did not copy it, revoke it and create another.",
    )
    return redirect(collection.url)


# Rendering --------------------------------------------------------------------


@dataclass
class KeyRow:
    key: ApiKey
    status: str
    expiring: bool
    manageable: bool
    #: Its 30-day request chart (`usage_views.add_row_usage`).
    usage: Chart | None = None


def _rows(keys, now, collection: Collection) -> list[KeyRow]:
    rows = []
    for key in keys:
        status = key.status_at(now)
        rows.append(
            KeyRow(
                key=key,
                status=status,
                expiring=status == KeyStatus.ACTIVE
                and key.expires_at is not None
                and key.expires_at - now <= EXPIRING_WITHIN,
                manageable=collection.can_manage and status == KeyStatus.ACTIVE,
            )
        )
    return rows


def _legacy_banner(collection: Collection) -> dict | None:
    if collection.kind is KeyKind.PUBLIC:
        return None
    legacy = legacy_keys_in_scope(**collection.scope_ids)
    count = legacy.count()
    if not count:
        return None
    recent = list(legacy.filter(last_used_at__isnull=False)[:RECENT_LEGACY_SHOWN])
    return {
        "count": count,
        "sunset_at": settings.LEGACY_KEYS_SUNSET_AT,
        "sunset_passed": timezone.now() >= settings.LEGACY_KEYS_SUNSET_AT,
        "recent": recent,
    }


PAGE_TEXT = {
    KeyKind.PUBLIC: {
        "title": "SDK Keys",
        "singular": "SDK key",
        "lead": "Public keys for the browser SDK. They can only create and read analyses, "
        "and you can restrict each one to your sites' origins.",
    },
    KeyKind.SECRET: {
        "title": "API Keys",
        "singular": "API key",
        "lead": "Secret keys for servers, scripts and CI, bound to this project. "
        "Keep them out of browsers and source code.",
    },
    KeyKind.ORGANIZATION: {
        "title": "Organization API Keys",
        "singular": "organization key",
        "lead": "Secret keys that act on any project of the organization. "
        "Send X-Project-Id with every project request.",
    },
}


def _render(
    request: HttpRequest,
    collection: Collection,
    *,
    form: KeyCreateForm | None = None,
    minted: services.MintedKey | None = None,
    minted_how: str = "created",
    previous: ApiKey | None = None,
    row_errors: dict | None = None,
) -> HttpResponse:
    now = timezone.now()
    unused = usage_views.unused_days(request)
    keys = usage_views.only_unused(collection.keys(), unused, now)
    page = Paginator(keys.select_related("replaces"), PER_PAGE).get_page(request.GET.get("page"))
    rows = _rows(page, now, collection)
    usage_views.add_row_usage(rows, now)
    context = {
        "collection": collection,
        "kind": collection.kind.name.lower(),
        "text": PAGE_TEXT[collection.kind],
        "page": page,
        "rows": rows,
        "unused": unused,
        "unused_choices": usage_views.filter_choices(unused),
        "unused_query": f"unused={unused}" if unused else "",
        "form": form or KeyCreateForm(kind=collection.kind),
        "roll_choices": GRACE_CHOICES,
        "banner": _legacy_banner(collection),
        "minted": minted,
        "minted_how": minted_how,
        "previous": previous,
        "sunset_at": settings.LEGACY_KEYS_SUNSET_AT,
        "row_errors": row_errors or {},
        "nonce": issue_nonce(request) if collection.can_manage else "",
    }
    response = render(request, "apikeys/keys.html", context)
    if minted is not None:
        response["Cache-Control"] = "no-store"
    return response


# Views ------------------------------------------------------------------------


@dashboard_page
@require_http_methods(["GET", "POST"])
def key_collection(request: HttpRequest, kind: KeyKind, project_id=None, org_id=None):
    """GET: the list (and the create form for owners/admins). POST: mint a key."""
    collection = _collection(request, kind, project_id, org_id)
    if request.method == "GET":
        return _render(request, collection)
    collection.require_manager()
    form = KeyCreateForm(request.POST, kind=kind)
    nonce = consume_nonce(request)
    if nonce == "used":
        return _already_submitted(request, collection)
    if nonce == "invalid":
        form.add_error(None, "This form expired. Check the details and submit it again.")
    if nonce == "fresh" and form.is_valid():
        try:
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
            return _render(request, collection, minted=minted)
    return _render(request, collection, form=form)


@dashboard_page
@require_POST
def key_revoke(request: HttpRequest, kind: KeyKind, key_id, project_id=None, org_id=None):
    collection, api_key = _managed_key(request, kind, key_id, project_id, org_id)
    api_key = services.revoke_key(actor=request.principal.user, api_key=api_key, request=request)
    messages.success(request, f"Revoked “{api_key.name}” ({api_key.prefix}…). It stopped working.")
    return redirect(collection.url)


def _mint_from_row(
    request: HttpRequest,
    collection: Collection,
    api_key,
    *,
    how: str,
    mint: Callable[[], services.MintedKey],
    form_error: str | None = None,
):
    """A row action that mints a successor (roll, replace): one-time nonce, errors on
    the key's row, the new key shown once."""
    nonce = consume_nonce(request)
    if nonce == "used":
        return _already_submitted(request, collection)
    error = "This form expired; try again." if nonce == "invalid" else form_error
    if error:
        return _render(request, collection, row_errors={api_key.id: error})
    try:
        minted = mint()
    except (ValidationFailed, RateLimited) as exc:
        return _render(request, collection, row_errors={api_key.id: _first_message(exc)})
    return _render(request, collection, minted=minted, minted_how=how, previous=api_key)


@dashboard_page
@require_POST
def key_roll(request: HttpRequest, kind: KeyKind, key_id, project_id=None, org_id=None):
    """Mint a successor and show it once; the old key expires after the chosen grace."""
    collection, api_key = _managed_key(request, kind, key_id, project_id, org_id)
    form = RollForm(request.POST)
    return _mint_from_row(
        request,
        collection,
        api_key,
        how="rolled",
        form_error=None if form.is_valid() else "Choose when the old key stops working.",
        mint=lambda: services.roll_key(
            actor=request.principal.user,
            api_key=api_key,
            grace_seconds=form.cleaned_data["grace_seconds"],
            request=request,
        ),
    )


@dashboard_page
@require_POST
def key_replace(request: HttpRequest, kind: KeyKind, key_id, project_id=None, org_id=None):
    """A legacy key gets an `ss_secret_` successor, shown once; the legacy key keeps working."""
    collection, api_key = _managed_key(request, kind, key_id, project_id, org_id)
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
    collection, api_key = _managed_key(request, kind, key_id, project_id, org_id)
    form = OriginsForm(request.POST)
    if not form.is_valid():
        return _render(
            request, collection, row_errors={api_key.id: form.errors["allowed_origins"][0]}
        )
    origins = origins_from_text(form.cleaned_data["allowed_origins"])
    try:
        services.set_allowed_origins(
            actor=request.principal.user, api_key=api_key, origins=origins, request=request
        )
    except ValidationFailed as exc:
        return _render(request, collection, row_errors={api_key.id: _first_message(exc)})
    if origins:
        messages.success(
            request, f"“{api_key.name}” now works only from {', '.join(api_key.allowed_origins)}."
        )
    else:
        messages.success(request, f"“{api_key.name}” now works from any origin.")
    return redirect(collection.url)


def _first_message(exc: ApiError) -> str:
    fields = exc.details.get("fields") if isinstance(exc.details, dict) else None
    if fields:
        return next(iter(fields.values()))[0]
    return exc.message
