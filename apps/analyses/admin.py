"""Operators' admin for analyses: read-only (customers create them through the API)."""

from __future__ import annotations

from django.contrib import admin

from apps.analyses.models import Analysis, Feedback, FollowUp
from core.admin import ReadOnlyAdminMixin

AUTHORED_FIELDS = ("created_by_type", "created_by_label", "created_at")


class FollowUpInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = FollowUp
    fields = ("question", *AUTHORED_FIELDS)
    readonly_fields = fields
    extra = 0


class FeedbackInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Feedback
    fields = ("rating", "comment", *AUTHORED_FIELDS)
    readonly_fields = fields
    extra = 0


@admin.register(Analysis)
class AnalysisAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("title", "project", "status", "created_by_label", "created_at")
    list_filter = ("status", "created_by_type")
    search_fields = ("title", "=id", "project__name", "created_by_label")
    list_select_related = ("project",)
    fields = ("id", "project", "title", "input", "status", *AUTHORED_FIELDS)
    readonly_fields = fields
    inlines = (FollowUpInline, FeedbackInline)
