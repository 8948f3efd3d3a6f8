"""Shared pieces of the operators' admin."""

from __future__ import annotations


class ReadOnlyAdminMixin:
    """Operators see these rows but never add, edit or delete them in the admin.

    Used for records written only by the product's services (audit events,
    sessions, API keys, analyses): an edit here would bypass their rules.
    """

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
