"""Operators' admin for invitations: read-only (services write them), the token digest hidden."""

from __future__ import annotations

from django.contrib import admin

from apps.invitations.models import Invitation
from core.admin import ReadOnlyAdminMixin


@admin.register(Invitation)
class InvitationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "email",
        "organization",
        "role",
        "invited_by",
        "created_at",
        "expires_at",
        "accepted_at",
        "cancelled_at",
    )
    list_filter = ("role", ("accepted_at", admin.EmptyFieldListFilter))
    search_fields = ("normalized_email", "organization__name", "=id")
    list_select_related = ("organization", "invited_by")
    fields = (
        "id",
        "organization",
        "email",
        "role",
        "invited_by",
        "created_at",
        "expires_at",
        "accepted_at",
        "accepted_by",
        "cancelled_at",
    )
    readonly_fields = fields
    ordering = ("-created_at",)

    def lookup_allowed(self, lookup, value, request=None):
        # A digest narrowed one character at a time in a filter would leak it.
        if lookup.startswith("token_digest"):
            return False  # the changelist answers 400
        return super().lookup_allowed(lookup, value, request)
