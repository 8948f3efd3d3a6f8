"""Operators' admin for projects and their configuration (SPEC §6).

A project never moves to another organization (its keys and members belong to
that organization). Log sources and channels are customers' configuration,
changed through the API: the admin shows them read-only, without their
settings and targets (which can hold credentials).
"""

from __future__ import annotations

from django.contrib import admin

from apps.projects.models import Channel, LogSource, Project
from apps.projects.services import record_project_created, record_project_renamed


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


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
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

    def save_model(self, request, obj: Project, form, change: bool) -> None:
        super().save_model(request, obj, form, change)  # the admin's view is one transaction
        if not change:
            record_project_created(obj, actor=request.user, request=request)
        elif "name" in form.changed_data:
            before = form.initial["name"]
            record_project_renamed(obj, before=before, actor=request.user, request=request)
