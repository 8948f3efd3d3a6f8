"""The view schema classes (drf-spectacular), apart from `core.openapi`: REST framework
imports DEFAULT_SCHEMA_CLASS when a view's schema is first read, which `core.openapi`'s own
views do while it loads."""

from __future__ import annotations

import uritemplate
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter


class UuidPathAutoSchema(AutoSchema):
    """The schema class of every view (DEFAULT_SCHEMA_CLASS): path variables named `*_id`
    (`{id}` in SPEC.md once named by the hook above) are UUIDs.

    The URL patterns accept any text there so that a malformed id gets the
    resource's own 404 (PROJECT_NOT_FOUND or NOT_FOUND) from the view.
    """

    #: Last path segments that are verbs on the item before them, not collections in it: a
    #: POST there is the verb (`projects_api_keys_revoke`), not `..._revoke_create`.
    ACTIONS = ("revoke", "roll")

    def get_operation_id(self):
        """drf-spectacular's, but a verb's POST named by the verb and a PATCH `_update`
        (an SDK audit: generated clients had `..._revoke_create`, `..._partial_update`)."""
        operation_id = super().get_operation_id()
        if self.method == "POST" and self.path.rstrip("/").rsplit("/", 1)[-1] in self.ACTIONS:
            return operation_id.removesuffix("_create")
        if self.method == "PATCH":
            return operation_id.removesuffix("_partial_update") + "_update"
        return operation_id

    def get_override_parameters(self):
        ids = [
            OpenApiParameter(name, OpenApiTypes.UUID, OpenApiParameter.PATH)
            for name in uritemplate.variables(self.path)
            if name.endswith("_id")
        ]
        return [*ids, *super().get_override_parameters()]


class IdPathAutoSchema(UuidPathAutoSchema):
    """A GET of a collection path is a `_list` (the views that set it)."""

    def get_operation_id(self):
        operation_id = super().get_operation_id()
        if self.method == "GET" and not self.path.endswith("}"):
            operation_id = operation_id.removesuffix("_retrieve") + "_list"
        return operation_id
