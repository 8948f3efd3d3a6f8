"""Operators' admin for audit events: read-only, as the log is append-only (SPEC §6)."""

from __future__ import annotations

from django.contrib import admin

from apps.audit.models import AuditEvent
from apps.audit.services import Action
from core.admin import ReadOnlyAdminMixin


class ActionFilter(admin.SimpleListFilter):
    title = "action"
    parameter_name = "action"

    def lookups(self, request, model_admin):
        return [(action, action) for action in Action.ALL]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(action=self.value())
        return queryset


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "created_at",
        "action",
        "organization",
        "project",
        "actor_type",
        "actor_label",
        "target_type",
        "target_label",
        "ip",
    )
    list_filter = (ActionFilter, "actor_type")
    search_fields = ("actor_label", "target_label", "=target_id", "organization__name", "ip")
    list_select_related = ("organization", "project")
    # A filtered list says "Show all", not the table's size: counting every event of every
    # tenant a second time on each page grows with the log (Django's advice for big tables).
    show_full_result_count = False
    fields = (
        "id",
        "created_at",
        "action",
        "organization",
        "project",
        "actor_type",
        "actor_user",
        "actor_key",
        "actor_label",
        "target_type",
        "target_id",
        "target_label",
        "ip",
        "user_agent",
        "details",
    )
    readonly_fields = fields
