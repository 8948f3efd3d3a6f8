"""Operators' admin for organizations and memberships (SPEC §6).

The product rule "an organization always keeps an owner" holds here too: the
member forms and every delete that would remove an organization's last owner
are refused. Every membership an operator adds, changes or removes here is in the
organization's audit log as the API's are (`member.added`, `member.role_changed`,
`member.removed`, the operator as actor), in the same transaction (also when a
user is deleted, `apps.accounts.admin`), and so is every project added
(`project.created`); a membership never moves to another user.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib import admin
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Count, Exists, IntegerField, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.forms.models import BaseInlineFormSet
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils.html import format_html

from apps.audit.services import Action
from apps.orgs import selectors
from apps.orgs.access import accounts_active_now
from apps.orgs.models import Membership, Organization
from apps.orgs.services import (
    delete_organizations,
    lock_owners,
    membership_changed,
    record_membership_event,
    record_organization_created,
    record_organization_updated,
)
from apps.projects.models import Project
from apps.projects.services import (
    record_project_created,
    record_project_renamed,
    refuse_more_projects,
)
from core.admin import NamedModelForm, changed_columns, without_read_only
from core.errors import ValidationFailed
from core.permissions import Role

LAST_OWNER_MESSAGE = "An organization must keep at least one owner."


def organizations_left_without_owner(removed: Iterable[Membership]) -> list[Organization]:
    """Organizations whose every owner is among `removed` (memberships deleted or demoted).

    The owners are read under the lock the API's member changes take (`lock_owners`), so
    a demotion made through the API a moment ago is seen, and one in flight is waited
    for: the admin's forms and deletes run in a transaction that keeps the lock to the end.
    """
    removed_ids_by_org: dict = {}
    for membership in removed:
        removed_ids_by_org.setdefault(membership.organization_id, set()).add(membership.pk)
    orphaned = []
    with transaction.atomic():
        # In one order (by id), as every operator's delete takes these locks: no deadlock.
        for organization_id, removed_ids in sorted(removed_ids_by_org.items(), key=str):
            owners = lock_owners(organization_id)
            # Owners whose account is active, read after the locks, as the API's member
            # changes read them: a deactivated owner keeps no organization (the review).
            active = accounts_active_now(owner.user_id for owner in owners)
            keeping = {owner.pk for owner in owners if owner.user_id in active}
            if {owner.pk for owner in owners} & removed_ids and keeping <= removed_ids:
                orphaned.append(Organization.objects.get(pk=organization_id))
    return orphaned


def owned_by_no_one_active(user_ids: Iterable) -> list[Organization]:
    """The organizations these users own, read after their deactivation, where no owner's
    account is active any more: nobody can manage them until an operator adds an owner or
    reactivates one (a deactivation is the operators' emergency lever, so it is told, not
    refused)."""
    active_owner = selectors.active_owners(OuterRef("pk"))
    return list(
        Organization.objects.filter(
            pk__in=Membership.objects.filter(user_id__in=list(user_ids), role=Role.OWNER).values(
                "organization_id"
            )
        )
        .exclude(Exists(active_owner))
        .order_by("name")
    )


def refuse_if_last_owners(removed: Iterable[Membership]) -> None:
    """At the delete itself: the confirmation page checked before, without the lock held
    since (Django's bulk delete action runs outside a transaction until here)."""
    if organizations_left_without_owner(removed):
        raise PermissionDenied(LAST_OWNER_MESSAGE)


def protect_last_owners(
    removed: Iterable[Membership], deleted_objects: tuple
) -> tuple[list, dict, set, list]:
    """Add a "protected" entry (which makes the admin refuse the delete) per orphaned org."""
    to_delete, model_count, perms_needed, protected = deleted_objects
    protected = list(protected) + [
        f"{organization} (its last owner: {LAST_OWNER_MESSAGE.lower()})"
        for organization in organizations_left_without_owner(removed)
    ]
    return to_delete, model_count, perms_needed, protected


def save_membership(request, membership: Membership, previous_role: str | None) -> None:
    """Save an added (`previous_role` None) or changed membership, with its audit event.

    A changed one's role before is read again under a lock, not taken from the form (read
    without one): a change by the API committed in between made a second, identical
    `member.role_changed`, or one whose `from` was stale (found by an audit-log audit)."""
    if previous_role is not None:
        locked = Membership.objects.select_for_update().filter(pk=membership.pk)
        previous_role = locked.values_list("role", flat=True).first() or previous_role
    membership.save()
    if previous_role is None:
        details = {"role": membership.role}
        record_membership_event(Action.MEMBER_ADDED, membership, request.user, request, details)
    elif previous_role != membership.role:
        details = {"from": previous_role, "to": membership.role}
        record_membership_event(
            Action.MEMBER_ROLE_CHANGED, membership, request.user, request, details
        )
        membership_changed(
            membership=membership, role=membership.role, actor_user=request.user, request=request
        )


def delete_membership(request, membership: Membership) -> None:
    membership.delete()
    details = {"role": membership.role}
    record_membership_event(Action.MEMBER_REMOVED, membership, request.user, request, details)
    membership_changed(membership=membership, role=None, actor_user=request.user, request=request)


class MembershipInlineFormSet(BaseInlineFormSet):
    #: Set by `MembershipInline.get_formset`: the organization's add page, not its change page.
    organization_is_new = False

    def clean(self) -> None:
        """Refuse what leaves the organization no owner who can act: a new organization
        without one, or a change that demotes or removes the last. One that has no owner
        already (no membership at all, or members and admins only) can still be renamed
        or given members: every save of its page was refused until an owner was added."""
        super().clean()
        for form in self.initial_forms:
            if "user" in form.changed_data:
                raise ValidationError(
                    "A membership does not move to another user: remove it and add theirs."
                )
        owners = [
            form
            for form in self.forms
            if form.cleaned_data
            and not form.cleaned_data.get("DELETE")
            and form.cleaned_data.get("role") == Role.OWNER
        ]
        # An owner made counts only with an account that can act, as the API's last-owner
        # rule counts them: promoting a deactivated member while demoting the last active
        # owner left an organization nobody could manage (an admin audit).
        made = accounts_active_now(
            form.cleaned_data["user"].pk
            for form in owners
            if form.initial.get("role") != Role.OWNER and form.cleaned_data.get("user")
        )
        if self.organization_is_new:
            if not made:  # its first owners
                raise ValidationError(LAST_OWNER_MESSAGE)
            return
        # Owners this form takes away and makes none: checked against the owners as they
        # are now (another may have been demoted elsewhere since the form was drawn).
        taken = [
            form.instance
            for form in self.initial_forms
            if form.initial.get("role") == Role.OWNER
            and (form.cleaned_data.get("DELETE") or form.cleaned_data.get("role") != Role.OWNER)
        ]
        if taken and not made and organizations_left_without_owner(taken):
            raise ValidationError(LAST_OWNER_MESSAGE)


class MembershipInline(admin.TabularInline):
    model = Membership
    formset = MembershipInlineFormSet
    fields = ("user", "role", "created_at")
    readonly_fields = ("created_at",)
    raw_id_fields = ("user",)
    extra = 0

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        formset.organization_is_new = obj is None  # a class of its own for each page
        return formset


class ProjectInlineFormSet(BaseInlineFormSet):
    def clean(self) -> None:
        """The projects added count against the organization's bound, as the API's
        (`refuse_more_projects`), its row locked until they are saved (the page's
        transaction)."""
        super().clean()
        adding = sum(1 for form in self.extra_forms if form.has_changed())
        if adding:
            try:
                refuse_more_projects(self.instance.pk, adding=adding)
            except ValidationFailed as exc:
                raise ValidationError(exc.details["fields"]["name"]) from exc


class ProjectInline(admin.TabularInline):
    model = Project
    form = NamedModelForm
    formset = ProjectInlineFormSet
    fields = ("name", "created_at")
    readonly_fields = ("created_at",)
    show_change_link = True
    # Deleting a project deletes its keys and analyses: do it from the project's
    # own page, where the admin lists everything that goes with it.
    can_delete = False
    extra = 0


#: Members and projects an organization's page edits in place; past it, the page links to
#: their own (paginated) lists. Each row posts its fields and reads its user: an
#: organization of 40 members posted more than DATA_UPLOAD_MAX_NUMBER_FIELDS (a 400, the
#: page could not be saved) and read one user per row (a pages audit).
INLINE_ROWS_AT_MOST = 25


def _count_of(model) -> Coalesce:
    """The organization's rows of `model`, counted in a subquery of their own: two joined
    COUNT(DISTINCT) counted members times projects rows (0.7 s for 3,000 members and 330
    projects, a pages audit)."""
    rows = (
        model.objects.filter(organization=OuterRef("pk"))
        .order_by()
        .values("organization")
        .annotate(total=Count("pk"))
        .values("total")
    )
    return Coalesce(Subquery(rows, output_field=IntegerField()), 0)


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    form = NamedModelForm
    list_display = ("name", "id", "member_count", "project_count", "created_at")
    search_fields = ("name", "=id")
    readonly_fields = ("id", "created_at", "members", "projects")
    fields = ("id", "name", "created_at", "members", "projects")
    inlines = (MembershipInline, ProjectInline)
    ordering = ("name",)

    def get_inlines(self, request, obj):
        if obj is not None and _too_many_rows(obj):
            return ()
        return self.inlines

    @admin.display(description="Members")
    def members(self, obj: Organization) -> str:
        return _rows_link(obj, Membership, getattr(obj, "member_total", None), "member")

    @admin.display(description="Projects")
    def projects(self, obj: Organization) -> str:
        return _rows_link(obj, Project, getattr(obj, "project_total", None), "project")

    def get_object(self, request, object_id, from_field=None):
        organization = super().get_object(request, object_id, from_field)
        if organization is not None and request.method == "POST":
            # The change and delete pages' transaction locks the organization's row first,
            # before its forms lock owners and save memberships: the order every writer of
            # an organization's memberships takes (`apps.orgs.access.locked_role`).
            Organization.objects.select_for_update(no_key=True).filter(pk=organization.pk).exists()
        return organization

    def get_deleted_objects(self, objs, request):
        """Everything the organization holds goes with it: its keys, audit events and
        analyses too, which the admin shows read-only (no one is left to tell)."""
        to_delete, model_count, perms_needed, protected = super().get_deleted_objects(objs, request)
        return to_delete, model_count, without_read_only(perms_needed, self.admin_site), protected

    def delete_model(self, request, obj):
        """The delete page's, as the bulk action's: Django's calls `obj.delete()`, without
        the locks below (an admin audit: a usage copy committed during an organization's
        delete on its own page broke the key's foreign key, a 503, the organization kept)."""
        self.delete_queryset(request, Organization.objects.filter(pk=obj.pk))

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            # (The changelist's queryset counts members and projects: no FOR with GROUP BY.)
            delete_organizations(queryset.values("pk"))

    def save_model(self, request, obj, form, change):
        # The admin's view is one transaction. A change writes only what the form changed:
        # the row was read before the lock (`get_object`), and a key policy an owner set
        # since was written back as it had been (an admin audit).
        if not change:
            super().save_model(request, obj, form, change)
            record_organization_created(obj, actor=request.user, request=request)
            return
        obj.save(update_fields=changed_columns(form))
        if "name" in form.changed_data:
            renamed = (form.initial["name"], obj.name)
            record_organization_updated(obj, "name", renamed, actor=request.user, request=request)

    def save_formset(self, request, form, formset, change):
        if formset.model is Project:
            super().save_formset(request, form, formset, change)
            for project in formset.new_objects:
                record_project_created(project, actor=request.user, request=request)
            for inline_form in formset.initial_forms:
                if inline_form.instance.pk and "name" in inline_form.changed_data:
                    before = inline_form.initial["name"]
                    project = inline_form.instance
                    record_project_renamed(
                        project, before=before, actor=request.user, request=request
                    )
            return None
        if formset.model is not Membership:
            return super().save_formset(request, form, formset, change)
        formset.save(commit=False)  # sets each new membership's organization
        for membership in formset.deleted_objects:
            delete_membership(request, membership)
        changed = [f for f in formset.forms if f.has_changed() and f not in formset.deleted_forms]
        for inline_form in changed:
            existing = inline_form in formset.initial_forms
            previous = inline_form.initial.get("role") if existing else None
            save_membership(request, inline_form.instance, previous)
        return None

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(member_total=_count_of(Membership), project_total=_count_of(Project))
        )

    @admin.display(description="Members", ordering="member_total")
    def member_count(self, obj: Organization) -> int:
        return obj.member_total

    @admin.display(description="Projects", ordering="project_total")
    def project_count(self, obj: Organization) -> int:
        return obj.project_total


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "organization", "role", "created_at")
    list_filter = ("role",)
    search_fields = ("user__email", "organization__name")
    list_select_related = ("user", "organization")
    raw_id_fields = ("user", "organization")
    ordering = ("organization__name", "user__email")

    def get_readonly_fields(self, request, obj=None):
        # A membership moves neither to another user nor to another organization.
        return ("user", "organization", "created_at") if obj else ("created_at",)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        guarded = obj

        class LastOwnerGuardForm(form):
            def clean(self):
                cleaned = super().clean()
                demoted = (
                    guarded is not None
                    and guarded.role == Role.OWNER
                    and cleaned.get("role") != Role.OWNER
                )
                if demoted and organizations_left_without_owner([guarded]):
                    raise ValidationError(LAST_OWNER_MESSAGE)
                return cleaned

        return LastOwnerGuardForm

    def get_deleted_objects(self, objs, request):
        return protect_last_owners(list(objs), super().get_deleted_objects(objs, request))

    def save_model(self, request, obj, form, change):
        save_membership(request, obj, form.initial.get("role") if change else None)

    def delete_model(self, request, obj):
        delete_membership(request, obj)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            memberships = list(queryset.select_related("user"))
            refuse_if_last_owners(memberships)
            for membership in memberships:
                delete_membership(request, membership)


def _too_many_rows(organization: Organization) -> bool:
    totals = (
        getattr(organization, "member_total", None),
        getattr(organization, "project_total", None),
    )
    if None in totals:  # an organization not read through the admin's queryset
        totals = (organization.memberships.count(), organization.projects.count())
    return max(totals) > INLINE_ROWS_AT_MOST


def _rows_link(organization: Organization, model, total: int | None, noun: str) -> str:
    """The organization's `total` rows of `model` and a link to their own list, filtered."""
    if organization.pk is None or total is None:
        return "—"
    meta = model._meta
    url = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
    label = f"{total} {noun}{pluralize(total)}"
    return format_html(
        '{} — <a href="{}?organization__id__exact={}">open the list</a>',
        label,
        url,
        organization.pk,
    )
