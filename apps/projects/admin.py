"""Operators' admin for projects and their configuration (SPEC §6).

A project never moves to another organization (its keys and members belong to
that organization). Log sources and channels are customers' configuration,
changed through the API: the admin shows them read-only, without their
settings and targets (which can hold credentials).
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db import transaction

from apps.projects.models import Channel, LogSource, Project
from apps.projects.services import (
    record_project_created,
    record_project_deleted,
    record_project_renamed,
    refuse_more_projects,
)
from core.admin import NamedModelForm, without_read_only
from core.errors import ValidationFailed

#: What keeps projects from being deleted, registered by the apps above this one (their
#: keys): each is given the projects and names what blocks, a line per project and reason.
deletion_blockers: list[Callable[[list[Project]], list[str]]] = []


def deletion_blocked(projects: list[Project]) -> list[str]:
    return [reason for blocker in deletion_blockers for reason in blocker(projects)]


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class LogSourceInline(ReadOnlyInline):
    model = LogSource
    fields = ("name", "kind", "created_at", "updated_at")
    readonly_fields = fields


class ChannelInline(ReadOnlyInline):
    model = Channel
    # The target (a Slack or webhook URL) can be a credential: not shown.
    fields = ("name", "kind", "created_at", "updated_at")
    readonly_fields = fields


class ProjectAddForm(NamedModelForm):
    """A project added here counts against its organization's bound as the API's do
    (`refuse_more_projects`): the admin's view is one transaction, so the organization's
    row locked here stays locked until the project is saved."""

    def clean(self):
        cleaned = super().clean()
        organization = cleaned.get("organization")
        if organization is not None:
            try:
                refuse_more_projects(organization.pk, field="organization")
            except ValidationFailed as exc:
                self.add_error("organization", exc.details["fields"]["organization"])
        return cleaned


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    form = NamedModelForm
    list_display = ("name", "organization", "id", "created_at")
    search_fields = ("name", "=id", "organization__name")
    list_select_related = ("organization",)
    raw_id_fields = ("organization",)
    ordering = ("organization__name", "name")
    inlines = (LogSourceInline, ChannelInline)

    def get_readonly_fields(self, request, obj=None):
        return ("id", "organization", "created_at") if obj else ("id", "created_at")

    def get_fields(self, request, obj=None):
        return ("id", "name", "organization", "created_at") if obj else ("name", "organization")

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = ProjectAddForm
        return super().get_form(request, obj, change, **kwargs)

    def save_model(self, request, obj: Project, form, change: bool) -> None:
        super().save_model(request, obj, form, change)  # the admin's view is one transaction
        if not change:
            record_project_created(obj, actor=request.user, request=request)
        elif "name" in form.changed_data:
            before = form.initial["name"]
            record_project_renamed(obj, before=before, actor=request.user, request=request)

    def get_deleted_objects(self, objs, request):
        """Its analyses and configuration go with it; a project with keys (their rows stay
        for the audit) or named by an active organization key is not deleted."""
        projects = list(objs)
        to_delete, model_count, perms_needed, protected = super().get_deleted_objects(
            projects, request
        )
        protected = [*protected, *deletion_blocked(projects)]
        return to_delete, model_count, without_read_only(perms_needed, self.admin_site), protected

    def delete_model(self, request, obj: Project) -> None:
        self.delete_queryset(request, Project.objects.filter(pk=obj.pk))

    def delete_queryset(self, request, queryset) -> None:
        with transaction.atomic():
            # Locked, then checked again: a key minted or confined to a project since the
            # confirmation page would otherwise be left to it. Their organizations' rows
            # first, as every writer of what belongs to one (`apps.orgs.access.locked_role`):
            # a mint or key change now waits, then fails on the project gone.
            ids = list(queryset.values_list("pk", flat=True))
            organization = Project._meta.get_field("organization").related_model
            list(
                organization.objects.select_for_update(no_key=True)
                .filter(pk__in=Project.objects.filter(pk__in=ids).values("organization_id"))
                .order_by("pk")
                .values_list("pk", flat=True)
            )
            projects = list(Project.objects.select_for_update().filter(pk__in=ids).order_by("pk"))
            if deletion_blocked(projects):
                raise PermissionDenied("A project with keys is not deleted.")
            for project in projects:
                record_project_deleted(project, actor=request.user, request=request)
            super().delete_queryset(
                request, Project.objects.filter(pk__in=[p.pk for p in projects])
            )
