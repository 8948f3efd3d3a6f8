"""Key management (SPEC §4.3, §4.7) and the public leaked-key report.

Three collections, one set of views; the URL decides the kind of key, never
the body:

* `/v1/projects/{project_id}/sdk-keys`       → `ss_pub_`
* `/v1/projects/{project_id}/api-keys`       → `ss_secret_` (legacy keys listed here too)
* `/v1/organizations/{org_id}/api-keys`      → `ss_org_`

Order of checks: an API key is refused (KEY_MANAGEMENT_FORBIDDEN) → the
collection is resolved (an unreachable project is PROJECT_NOT_FOUND, an
unreachable organization NOT_FOUND) → writes need owner or admin
(PERMISSION_DENIED) → the key id must be in this very collection (NOT_FOUND)
→ the body is validated by the services.

The full key appears only in the mint and roll responses.
"""

from __future__ import annotations

import time
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from apps.apikeys import leaks, services
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.representation import key_json
from apps.apikeys.schema import KeyKindAutoSchema
from apps.apikeys.selectors import Collection, collection_for
from apps.apikeys.serializers import (
    MINT_INPUTS,
    ROLL_INPUTS,
    UPDATE_INPUTS,
    KeySerializer,
    LeakReportInputSerializer,
    LeakReportResponseSerializer,
    MintedKeySerializer,
    minted_key_json,
)
from core import throttling
from core.api import ApiView, ManagementView, field_names, json_object, paginate
from core.errors import ValidationFailed
from core.net import client_ip
from core.openapi import PAGE_PARAMETERS, THROTTLED, error_responses, paginated

#: What `POST <collection>` takes (SPEC §4.3, §4.10), and `POST <collection>/{keyId}/roll`
#: (§4.7): any other field is refused (`core.api.json_object`), one that looks like a
#: misspelling of one of these naming it (a guardrail misspelled must not mint an unguarded
#: key).
MINT_FIELDS = (
    "name",
    "permissions",
    "expiresAt",
    "allowedOrigins",
    "rateLimit",
    "allowedIps",
    "projectIds",
)
ROLL_FIELDS = ("graceSeconds", "expiresAt", "allowedOrigins", "permissions")

#: Every accepted leak report takes at least this long, matched keys or not.
LEAK_REPORT_MIN_SECONDS = 0.15


def body_permissions(body: dict[str, Any], omitted: Any) -> Any:
    """`permissions` as sent, `omitted` when not. A sent null is no permissions at all, and
    refused as such (SPEC §4.3: an SDK key's are omitted or exactly the locked set)."""
    if "permissions" not in body:
        return omitted
    return [] if body["permissions"] is None else body["permissions"]


class KeyManagementView(ManagementView):
    """Base of the key collection views; `kind` is set per URL pattern."""

    schema = KeyKindAutoSchema()
    #: Set by each URL pattern (apps.apikeys.api_urls).
    kind: KeyKind | None = None
    #: The request body's serializer by kind, for the OpenAPI document (KeyKindAutoSchema).
    inputs: dict[KeyKind, type] = {}

    def collection(self) -> Collection:
        """The URL's collection, if the caller is a member of its organization."""
        return collection_for(
            self.principal.user,
            self.kind,
            project_id=self.kwargs.get("project_id"),
            org_id=self.kwargs.get("org_id"),
        )

    def managed_collection(self) -> Collection:
        """The collection, for a caller who may change it (owner or admin)."""
        return self.collection().require_manager()


class KeysView(KeyManagementView):
    inputs = MINT_INPUTS

    @extend_schema(
        summary="List keys",
        parameters=PAGE_PARAMETERS,
        description="Any member of the organization. Newest first; revoked keys included.",
        tags=["keys"],
        responses={
            200: paginated(KeySerializer, "KeyList"),
            **error_responses(400, 401, 403, 404),
        },
    )
    def get(self, request, **kwargs):
        now = timezone.now()
        return paginate(self, self.collection().keys(), lambda key: key_json(key, now))

    @extend_schema(
        summary="Mint a key",
        description=(
            "Owners and admins. The response carries the full key in `key`: it is shown this "
            "once and cannot be retrieved again. Throttled per organization. A field the "
            "collection does not take is a VALIDATION_ERROR (one that looks like a "
            "misspelling of a field, `expires_at`, `allowedIPs`, `projectId`, names it), and "
            "nothing is minted. An organization holds at most "
            f"{services.MAX_ACTIVE_KEYS_PER_ORGANIZATION:,} active keys, all kinds "
            "together (400 VALIDATION_ERROR on `name`; revoked and expired keys do not count)."
        ),
        tags=["keys"],
        responses={201: MintedKeySerializer, **error_responses(400, 401, 403, 404, 429)},
    )
    def post(self, request, **kwargs):
        collection = self.managed_collection()
        body = json_object(request, MINT_FIELDS)
        with collection.managing(self.principal.user):
            minted = services.mint_key(
                actor=self.principal.user,
                kind=self.kind,
                organization=collection.organization,
                project=collection.project,
                name=body.get("name"),
                permissions=body_permissions(body, omitted=None),
                expires_at=body.get("expiresAt"),
                allowed_origins=body.get("allowedOrigins"),
                rate_limit=body.get("rateLimit"),
                allowed_ips=body.get("allowedIps"),
                project_ids=body.get("projectIds"),
                request=request,
            )
        return Response(minted_key_json(minted, timezone.now()), status=201)


class KeyView(KeyManagementView):
    inputs = UPDATE_INPUTS

    @extend_schema(
        summary="One key",
        description="Any member of the organization.",
        tags=["keys"],
        responses={200: KeySerializer, **error_responses(401, 403, 404)},
    )
    def get(self, request, key_id, **kwargs):
        return Response(key_json(self.collection().key(key_id), timezone.now()))

    @extend_schema(
        summary="Change a key's name or guardrails",
        description=(
            "Owners and admins. Any of `name`, `rateLimit`, `allowedIps` (secret and "
            "organization keys), `allowedOrigins` (SDK keys) and `projectIds` (organization "
            "keys); fields not sent keep their values. Permissions never change (roll the key "
            "with `permissions` to give its successor others); `permissions` or any other "
            "field is a VALIDATION_ERROR, and so is a revoked or expired key "
            "(`details.fields.keyId`). In force from the next "
            "request; audited as `key.updated` with the values before and after."
        ),
        tags=["keys"],
        responses={200: KeySerializer, **error_responses(400, 401, 403, 404, 429)},
    )
    def patch(self, request, key_id, **kwargs):
        collection = self.managed_collection()
        api_key = collection.key(key_id)
        with collection.managing(self.principal.user):
            # The body as sent: `update_key` refuses what is not an object of its fields,
            # or names none of them, for every caller (`core.validation.check_fields`).
            api_key = services.update_key(
                actor=self.principal.user, api_key=api_key, changes=request.data, request=request
            )
        return Response(key_json(api_key, timezone.now()))


class KeyRevokeView(KeyManagementView):
    @extend_schema(
        summary="Revoke a key",
        description=(
            "Owners and admins. Immediate and final; revoking a revoked key changes nothing."
        ),
        tags=["keys"],
        request=None,
        responses={200: KeySerializer, **error_responses(401, 403, 404)},
    )
    def post(self, request, key_id, **kwargs):
        collection = self.managed_collection()
        api_key = collection.key(key_id)
        with collection.managing(self.principal.user):
            api_key = services.revoke_key(
                actor=self.principal.user, api_key=api_key, request=request
            )
        return Response(key_json(api_key, timezone.now()))


class KeyRollView(KeyManagementView):
    inputs = ROLL_INPUTS

    @extend_schema(
        summary="Roll a key",
        description=(
            "Owners and admins. Mints a successor with the same name, permissions (others "
            "with `permissions`, validated as at mint: an SDK key takes only the locked set, "
            "else PERMISSIONS_LOCKED), allowed origins (an SDK key's may be changed with "
            "`allowedOrigins`) and guardrails (its full key is in `key`, shown once); the old "
            "key expires after `graceSeconds`. The successor expires at `expiresAt` when sent "
            "(null: never), else as long from now as the old key was given at its mint (none "
            "when it had none); under an organization's `keyMaxLifetimeDays` a secret or "
            "organization key's is capped by it, and one sent must fall within it. Any "
            "other field is a VALIDATION_ERROR (naming the field it resembles, if any). A "
            "refused roll changes nothing."
        ),
        tags=["keys"],
        responses={201: MintedKeySerializer, **error_responses(400, 401, 403, 404, 429)},
    )
    def post(self, request, key_id, **kwargs):
        collection = self.managed_collection()
        api_key = collection.key(key_id)
        body = json_object(request, ROLL_FIELDS)
        with collection.managing(self.principal.user):
            minted = services.roll_key(
                actor=self.principal.user,
                api_key=api_key,
                grace_seconds=body.get("graceSeconds"),
                expires_at=body.get("expiresAt", services.INHERIT),
                allowed_origins=body.get("allowedOrigins", services.INHERIT),
                permissions=body_permissions(body, omitted=services.INHERIT),
                request=request,
            )
        return Response(minted_key_json(minted, timezone.now()), status=201)


class LeakedKeysView(ApiView):
    """Anyone may report leaked keys; the answer never says whether one existed.

    Every accepted report is padded to `LEAK_REPORT_MIN_SECONDS`, so a report
    that revoked a key and one that matched nothing look the same, in body,
    status and time.
    """

    authentication_classes = []
    permission_classes = []

    @extend_schema(
        operation_id="leaked_keys_report",
        summary="Report leaked keys",
        description=(
            "No credential needed. Every active secret SigSentry key in `keys` (at most 100 "
            "strings: `ss_secret_`, `ss_org_`, legacy) is revoked at once; an SDK key "
            "(`ss_pub_`, public by design) is never revoked, only flagged to its owners "
            "(audit event `key.leak_reported`). The answer is always 202 and never says "
            "whether a key existed. Throttled per client."
        ),
        tags=["keys"],
        request=LeakReportInputSerializer,
        responses={
            202: LeakReportResponseSerializer,
            **error_responses(400, 429, described={429: THROTTLED}),
        },
    )
    def post(self, request):
        started = time.monotonic()
        throttling.enforce("leak_report_ip", client_ip(request))
        candidates = json_object(request, field_names(LeakReportInputSerializer)).get("keys")
        if not isinstance(candidates, list) or not all(isinstance(c, str) for c in candidates):
            raise ValidationFailed({"keys": ["A list of strings is required."]})
        if len(candidates) > leaks.MAX_LEAK_REPORT_KEYS:
            raise ValidationFailed(
                {"keys": [f"At most {leaks.MAX_LEAK_REPORT_KEYS} keys per report."]}
            )
        leaks.report_leaked_keys(candidates=candidates, request=request)
        remaining = LEAK_REPORT_MIN_SECONDS - (time.monotonic() - started)
        if remaining > 0:
            time.sleep(remaining)
        return Response({"received": len(candidates)}, status=202)
