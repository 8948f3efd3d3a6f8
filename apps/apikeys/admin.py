"""Operators' admin for API keys (SPEC §6).

Invariants: the digest is never displayed, searched or editable; no form can
create a key or set one (keys are minted in the dashboard or imported); every
field is read-only; the only write is the `Revoke` action, which goes through
`revoke_key` — the same code, audit event included, as the dashboard and API.
"""

from __future__ import annotations

from collections import Counter

from django.contrib import admin, messages
from django.db.models import Count
from django.utils import timezone

from apps.apikeys.models import ApiKey, KeyScope, KeyStatus, active_at, expired_at
from apps.apikeys.services import revoke_key
from apps.projects.admin import deletion_blockers
from apps.projects.models import Project
from core.admin import ReadOnlyAdminMixin


def projects_keys_hold(projects: list[Project]) -> list[str]:
    """Projects not deleted (apps.projects.admin) because of their keys: a project's own
    keys, revoked ones too, whose rows stay for the audit (SPEC §2.1), and an active
    organization key confined to it, which would be left naming no project (and an edit of
    its other limits would then save an empty list: every project)."""
    own = (
        ApiKey.objects.filter(project__in=projects)
        .values("project_id")
        .annotate(keys=Count("pk"))
        .order_by()
    )
    keys_of = {row["project_id"]: row["keys"] for row in own}
    confined = Counter(
        project_id
        for project_ids in ApiKey.objects.filter(
            active_at(timezone.now()),
            scope=KeyScope.ORGANIZATION,
            organization_id__in={project.organization_id for project in projects},
        ).values_list("project_ids", flat=True)
        for project_id in project_ids
    )
    reasons = []
    for project in projects:
        if keys_of.get(project.pk):
            reasons.append(
                f"{project.name}: {keys_of[project.pk]} API key(s); keys stay for the "
                "organization's audit, revoked ones too"
            )
        if confined[str(project.pk)]:
            reasons.append(
                f"{project.name}: {confined[str(project.pk)]} active organization key(s) "
                "confined to it; change their projects first"
            )
    return reasons


deletion_blockers.append(projects_keys_hold)


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return KeyStatus.choices

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == KeyStatus.ACTIVE:
            return queryset.filter(active_at(now))
        if self.value() == KeyStatus.REVOKED:
            return queryset.filter(revoked_at__isnull=False)
        if self.value() == KeyStatus.EXPIRED:
            return queryset.filter(expired_at(now))
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "name",
        "prefix",
        "type",
        "scope",
        "status",
        "legacy",
        "organization",
        "project",
        "created_at",
        "last_used_at",
    )
    list_filter = ("type", "scope", StatusFilter, "legacy")
    search_fields = ("prefix", "name")
    search_help_text = "Search by prefix (e.g. ss_secret_AbCd1234) or name. Never paste a full key."
    list_select_related = ("organization", "project")
    ordering = ("-created_at",)
    fields = (
        "id",
        "name",
        "prefix",
        "type",
        "scope",
        "legacy",
        "status",
        "permissions",
        "allowed_origins",
        "organization",
        "project",
        "created_by",
        "created_at",
        "expires_at",
        "last_used_at",
        "last_used_project",
        "revoked_at",
        "revoked_by",
        "revoked_reason",
        "leak_reported_at",
        "replaces",
    )
    readonly_fields = fields
    exclude = ("digest",)
    actions = ("revoke",)  # SPEC §6: "a `Revoke` action"

    @admin.display(description="Status")
    def status(self, obj: ApiKey) -> str:
        return KeyStatus(obj.status).label

    def has_revoke_permission(self, request) -> bool:
        return request.user.has_perm("apikeys.change_apikey")

    @admin.action(description="Revoke", permissions=["revoke"])
    def revoke(self, request, queryset) -> None:
        revoked = 0
        for api_key in queryset.filter(revoked_at__isnull=True):
            revoke_key(actor=request.user, api_key=api_key, request=request, reason="admin")
            revoked += 1
        self.message_user(request, f"Revoked {revoked} key(s).", messages.SUCCESS)
