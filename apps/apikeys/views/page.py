"""The key collection page, and what its views share: the collection named by the URL,
a row action's key, and the page rendered with a minted key, a form's errors or a row's.

A minted key is rendered into this one response only, `Cache-Control: no-store`
(see `apps.apikeys.views.actions`).

A row's form carries the list it was drawn on (hidden `page` and `unused`): a failed row
action re-renders that list, so that the key's row, with its error, is on the page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Page, Paginator
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.utils import timezone

from apps.apikeys import guardrails, services, usage_views
from apps.apikeys.charts import Chart
from apps.apikeys.forms import (
    GRACE_CHOICES,
    KeyCreateForm,
    LimitsForm,
    OriginsForm,
    PolicyForm,
    RollForm,
    datetime_local,
    expiry_floor,
)
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey, KeyStatus
from apps.apikeys.selectors import (
    Collection,
    collection_for,
    legacy_keys_in_scope,
    rolled_key_ids,
)
from apps.projects.selectors import projects_by_name
from core.errors import ApiError
from core.nonce import issue_nonce
from core.permissions import Role

PER_PAGE = 50
POLICY_KEYS_SHOWN = 20
EXPIRING_WITHIN = timedelta(days=7)
RECENT_LEGACY_SHOWN = 5


def page_collection(
    request: HttpRequest, kind: KeyKind, project_id=None, org_id=None
) -> Collection:
    """The collection named by the URL (404 for anyone outside its organization); the
    page's sidebar shows where it is."""
    collection = collection_for(request.principal.user, kind, project_id=project_id, org_id=org_id)
    request.dashboard_org = collection.organization
    request.dashboard_project = collection.project
    return collection


def managed_key(
    request: HttpRequest, kind: KeyKind, key_id, project_id=None, org_id=None
) -> tuple[Collection, ApiKey]:
    """For a row action: the collection (404 outside it), a manager's role (403), the key (404)."""
    collection = page_collection(request, kind, project_id, org_id).require_manager()
    return collection, collection.key(key_id)


def already_submitted(request: HttpRequest, collection: Collection) -> HttpResponse:
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
    #: Guardrails (SPEC §4.10): the "Edit limits" form, the roll form's default expiry,
    #: whether the key outlives its organization's lifetime policy.
    limits: LimitsForm | None = None
    roll_expiry: str = ""
    outlives_policy: bool = False
    rate_label: str = ""
    project_labels: list[str] = field(default_factory=list)
    #: Its 30-day request chart (`usage_views.add_row_usage`).
    usage: Chart | None = None
    #: Rolled: it has a successor (its row then offers no second roll or replacement).
    rolled: bool = False
    #: The message of a failed row action on this key.
    error: str = ""
    #: A failed Roll or Origins, sent back with its errors: its dialog reopens with the
    #: values as typed (None: the dialog draws the key's own).
    roll: RollForm | None = None
    origins: OriginsForm | None = None

    @property
    def roll_grace(self) -> str:
        """The grace checked in the Roll dialog: as sent back, else an hour."""
        if self.roll is not None:
            return str(self.roll["grace_seconds"].value() or "")
        return "3600"


@dataclass
class RowFailure:
    """A row action that failed: its key, and the message for its row or the form of its
    dialog ("Edit limits", Roll, Origins) with its errors (the row's dialog reopens with
    them, the values as typed)."""

    key: ApiKey
    message: str = ""
    limits: LimitsForm | None = None
    roll: RollForm | None = None
    origins: OriginsForm | None = None

    @property
    def form(self) -> LimitsForm | RollForm | OriginsForm | None:
        return next((f for f in (self.limits, self.roll, self.origins) if f is not None), None)

    def shown_on(self, rows: list[KeyRow]) -> bool:
        """Whether its row is drawn and can show it: a dialog only on a row that has it."""
        row = next((row for row in rows if row.key.id == self.key.id), None)
        if row is None:
            return False
        form = self.form
        return form is None or any(form is drawn for drawn in (row.limits, row.roll, row.origins))

    def summary(self) -> str:
        """One line naming the key and the problem, for the page when its row cannot."""
        problem = self.message
        form = self.form
        if form is not None and form.errors:
            problem = next(iter(form.errors.values()))[0]
        return f"“{self.key.name}” ({self.key.prefix}…): {problem or 'nothing was changed.'}"


def _rows(keys, now, collection: Collection, projects=(), failure=None) -> list[KeyRow]:
    rows = []
    organization = collection.organization
    project_names = {str(p.id): p.name for p in projects}
    rolled = rolled_key_ids(keys)
    for key in keys:
        status = key.status_at(now)
        row = KeyRow(
            key=key,
            status=status,
            rolled=key.id in rolled,
            expiring=status == KeyStatus.ACTIVE
            and key.expires_at is not None
            and key.expires_at - now <= EXPIRING_WITHIN,
            manageable=collection.can_manage and status == KeyStatus.ACTIVE,
            project_labels=guardrails.project_labels(key.project_ids, project_names),
            rate_label=guardrails.key_rate_label(key),
        )
        failed = failure is not None and failure.key.id == key.id
        if failed:
            row.error = failure.message
        if status == KeyStatus.ACTIVE and collection.kind is not KeyKind.PUBLIC:
            row.outlives_policy = guardrails.exceeds_lifetime(
                key.expires_at, organization, key.created_at
            )
        if row.manageable:
            if failed and failure.limits is not None:
                row.limits = failure.limits
            else:
                # Unbound, its dialog copies the page's one project list when it opens
                # (`LimitsForm.project_choices_on_open`): choices built per row went unused
                # and cost 325 ms for 50 rows in an organization of 1,200 projects.
                row.limits = LimitsForm.for_key(key, collection.kind)
            row.roll_expiry = _roll_expiry(key, collection, now)
            if failed:
                _reopen_dialog(row, failure, collection)
        rows.append(row)
    return rows


def _reopen_dialog(row: KeyRow, failure: RowFailure, collection: Collection) -> None:
    """A failed Roll or Origins: its form, with the values as typed, for the row's dialog to
    reopen with, if the row draws that dialog (a rolled or legacy key has no Roll)."""
    if failure.roll is not None and not row.rolled and not row.key.legacy:
        row.roll = failure.roll
        row.roll_expiry = failure.roll["expires_at"].value() or ""
    if failure.origins is not None and collection.kind is KeyKind.PUBLIC:
        row.origins = failure.origins


def _roll_expiry(key: ApiKey, collection: Collection, now) -> str:
    """The roll form's suggested expiry for the successor (datetime-local text, UTC): what
    the API gives it (`services.successor_expiry`: the old key's lifetime from now, within
    the lifetime policy), or for a key that never expired, under a policy, the latest the
    policy allows. Not the old key's moment: a key rolled as its expiry email advises
    then died with it (a dates audit)."""
    expiry = services.successor_expiry(key, collection.organization, now)
    latest = guardrails.latest_expiry(collection.organization, now)
    if expiry is None and latest is not None and collection.kind is not KeyKind.PUBLIC:
        expiry = latest
    return datetime_local(expiry) if expiry else ""


def _create_form(
    form: KeyCreateForm | None, collection: Collection, projects: list, now
) -> KeyCreateForm | None:
    """The create form (the one sent back, with its errors, or a new one), its expiry's
    picker bounded by now and the lifetime policy."""
    form = form or KeyCreateForm(kind=collection.kind, projects=projects)
    form.bound_expiry(now, guardrails.latest_expiry(collection.organization, now))
    return form


def _roll_expiry_bounds(collection: Collection, now) -> dict[str, str]:
    """The roll forms' expiry picker bounds (`KeyCreateForm.bound_expiry`'s); SDK keys' roll
    has no expiry field."""
    latest = guardrails.latest_expiry(collection.organization, now)
    return {"min": expiry_floor(now)} | ({"max": datetime_local(latest)} if latest else {})


def confinable_projects(collection: Collection) -> list:
    """The projects an org key can be confined to (the organization's), by name."""
    if collection.kind is not KeyKind.ORGANIZATION:
        return []
    return list(projects_by_name(collection.organization.id))


def _policy(collection: Collection, now, form: PolicyForm | None = None) -> dict | None:
    """The organization's key lifetime policy and the keys that outlive it (org page only)."""
    if collection.kind is not KeyKind.ORGANIZATION:
        return None
    organization = collection.organization
    outliving = guardrails.keys_outliving_policy(organization, now)
    shown = list(outliving[:POLICY_KEYS_SHOWN])
    count = outliving.count() if len(shown) == POLICY_KEYS_SHOWN else len(shown)
    return {
        "days": organization.key_max_lifetime_days,
        "can_set": collection.role == Role.OWNER,
        "form": form
        or PolicyForm(initial={"key_max_lifetime_days": organization.key_max_lifetime_days}),
        "outliving": shown,
        "outliving_count": count,
        "outliving_more": count - len(shown),
    }


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


@dataclass(frozen=True)
class ListState:
    """Which list the page shows: a page number as sent (the paginator reads it: anything
    but a page number is page 1, past the end the last page) and the unused filter."""

    page: str | None = None
    unused: int | None = None


def list_state(params: QueryDict) -> ListState:
    """The list named by the page's query, or by a row form's hidden fields."""
    return ListState(params.get("page"), usage_views.unused_days(params))


def list_address(collection: Collection, state: ListState) -> str:
    """The address of the list a row form was on (its page and filter), for a way back."""
    query = ({"unused": state.unused} if state.unused else {}) | (
        {"page": state.page} if state.page else {}
    )
    return f"{collection.url}?{urlencode(query)}" if query else collection.url


def _paginator(collection: Collection, unused: int | None, now) -> Paginator:
    keys = usage_views.only_unused(collection.keys(), unused, now)
    return Paginator(keys.select_related("replaces"), PER_PAGE)


def _page_number_of(keys: QuerySet, key: ApiKey) -> int | None:
    """The page of `keys` (newest first, as `keys_in_collection` orders them) holding `key`;
    None if it is not among them."""
    if not keys.filter(pk=key.pk).exists():
        return None
    newer = keys.filter(
        Q(created_at__gt=key.created_at) | Q(created_at=key.created_at, id__gt=key.id)
    ).count()
    return newer // PER_PAGE + 1


def _list_page(
    collection: Collection, state: ListState, now, failure: RowFailure | None
) -> tuple[int | None, Page]:
    """The filter and page to draw. For a failed row action, one holding its key, for the
    error to show on its row: the page its form was on, or, if the key is no longer there
    (newer keys pushed it on, or it left the filter: revoked, used), the page that holds it
    now, under the filter or else among all keys."""
    page = _paginator(collection, state.unused, now).get_page(state.page)
    if failure is None or any(key.id == failure.key.id for key in page):
        return state.unused, page
    for unused in dict.fromkeys((state.unused, None)):
        paginator = _paginator(collection, unused, now)
        number = _page_number_of(paginator.object_list, failure.key)
        if number is not None:
            return unused, paginator.page(number)
    return state.unused, page


def _has_keys(collection: Collection, unused: int | None, page: Page) -> bool:
    """Whether the collection holds any key, revoked ones too (listed, and in the download,
    for the record): without one, the download and the filters have nothing to act on. A
    query only for a filtered list that shows none."""
    return page.paginator.count > 0 or (unused is not None and collection.keys().exists())


def _list_url(collection: Collection, unused: int | None, page: Page) -> str:
    """The address of the list drawn, for the page to show instead of a row action's
    (static/js/app.js): its relative links (pagination) and a reload then work."""
    query = ({"unused": unused} if unused else {}) | {"page": page.number}
    return f"{collection.url}?{urlencode(query)}"


def render_page(
    request: HttpRequest,
    collection: Collection,
    *,
    form: KeyCreateForm | None = None,
    minted: services.MintedKey | None = None,
    minted_how: str = "created",
    previous: ApiKey | None = None,
    failure: RowFailure | None = None,
    policy_form: PolicyForm | None = None,
) -> HttpResponse:
    now = timezone.now()
    # Other renders keep today's list: the URL's (page 1 after a POST to the collection).
    state = list_state(request.POST if failure else request.GET)
    unused, page = _list_page(collection, state, now, failure)
    projects = confinable_projects(collection)
    rows = _rows(page, now, collection, projects, failure)
    usage_views.add_row_usage(rows, now)
    if failure is not None and not failure.shown_on(rows):
        messages.error(request, failure.summary())
    context = {
        "collection": collection,
        "kind": collection.kind.name.lower(),
        "text": PAGE_TEXT[collection.kind],
        "page": page,
        "rows": rows,
        "unused": unused,
        "unused_choices": usage_views.filter_choices(unused),
        "unused_query": f"unused={unused}" if unused else "",
        "has_keys": _has_keys(collection, unused, page),
        "policy": _policy(collection, now, policy_form),
        "form": _create_form(form, collection, projects, now),
        "roll_expiry_bounds": _roll_expiry_bounds(collection, now),
        # Copied into an "Edit limits" dialog when it opens (`LimitsForm`).
        "project_choices": [(p.id, p.name) for p in projects] if collection.can_manage else [],
        "roll_choices": GRACE_CHOICES,
        "banner": _legacy_banner(collection),
        "minted": minted,
        "minted_how": minted_how,
        "previous": previous,
        "sunset_at": settings.LEGACY_KEYS_SUNSET_AT,
        "list_url": _list_url(collection, unused, page) if failure else "",
        "nonce": issue_nonce(request) if collection.can_manage else "",
    }
    response = render(request, "apikeys/keys.html", context)
    if minted is not None:
        response["Cache-Control"] = "no-store"
    return response


def row_failed(
    request: HttpRequest,
    collection: Collection,
    api_key: ApiKey,
    message: str = "",
    *,
    limits: LimitsForm | None = None,
    roll: RollForm | None = None,
    origins: OriginsForm | None = None,
) -> HttpResponse:
    """A row action's failure, shown on the key's row of the list its form was on: the
    message on the row, or the form in its reopened dialog."""
    failure = RowFailure(api_key, message, limits=limits, roll=roll, origins=origins)
    return render_page(request, collection, failure=failure)


def first_message(exc: ApiError) -> str:
    fields = exc.details.get("fields") if isinstance(exc.details, dict) else None
    if fields:
        return next(iter(fields.values()))[0]
    return exc.message
