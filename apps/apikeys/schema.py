"""OpenAPI pieces shared by the `/v1` views (drf-spectacular).

* `BearerAuthenticationScheme` describes `BearerAuthentication`: an API key or
  a JWT in `Authorization: Bearer`, or the dashboard's HttpOnly `ss_access`
  cookie (unsafe methods then need the CSRF token). Views that only a person
  may call (`ManagementView`s, and views marked `session_only`) list the JWT
  and cookie schemes only.
* `ErrorSerializer` is the SPEC §3 error body; `error_responses()` attaches it
  to the statuses an operation can answer.
* `MintedKeySchema` documents the mint/roll response as the Key object plus `key`.
* `IdPathAutoSchema` types the `*_id` path variables as UUIDs; `paginated()` and
  `PAGE_PARAMETERS` describe the `{results, next}` lists.

Imported by `ApikeysConfig.ready()` so the extension is registered before any
schema is generated.
"""

from __future__ import annotations

import uritemplate
from drf_spectacular.extensions import (
    OpenApiAuthenticationExtension,
    OpenApiSerializerExtension,
)
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers

from apps.apikeys.authentication import ACCESS_COOKIE
from apps.apikeys.serializers import KeySerializer
from sigsentry.api import ManagementView

API_KEY_SCHEME = "apiKeyAuth"
JWT_SCHEME = "jwtAuth"
COOKIE_SCHEME = "sessionCookie"


def _is_session_only(view) -> bool:
    return isinstance(view, ManagementView) or getattr(view, "session_only", False)


class BearerAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "apps.apikeys.authentication.BearerAuthentication"
    name = [API_KEY_SCHEME, JWT_SCHEME, COOKIE_SCHEME]

    def get_security_requirement(self, auto_schema):
        schemes = [JWT_SCHEME, COOKIE_SCHEME]
        if not _is_session_only(auto_schema.view):
            schemes.insert(0, API_KEY_SCHEME)
        # Alternatives (OR): any one of them authenticates the request.
        return [{scheme: []} for scheme in schemes]

    def get_security_definition(self, auto_schema):
        return [
            {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "API key",
                "description": (
                    "An API key (`ss_pub_`, `ss_secret_`, `ss_org_`, or a legacy `tb_` / "
                    "`ss_live_` key) in `Authorization: Bearer <key>`. API keys never "
                    "manage keys, organizations, projects or members."
                ),
            },
            {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": (
                    "A session access token from `/v1/auth/login` or `/v1/auth/signup` in "
                    "`Authorization: Bearer <token>`."
                ),
            },
            {
                "type": "apiKey",
                "in": "cookie",
                "name": ACCESS_COOKIE,
                "description": (
                    "The dashboard's HttpOnly session cookie, used when no Authorization "
                    "header is sent. Unsafe methods must then send the CSRF token in "
                    "`X-CSRFToken`."
                ),
            },
        ]


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="A SPEC §3 error code, e.g. `KEY_REVOKED`.")
    message = serializers.CharField(help_text="For people; never echoes a credential.")
    details = serializers.DictField(
        required=False,
        help_text=(
            "`fields` (field → messages) for VALIDATION_ERROR, `required` (the missing "
            "permission) for PERMISSION_DENIED."
        ),
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


_ERROR_DESCRIPTIONS = {
    400: "`VALIDATION_ERROR` (bad body or query; `details.fields`), `PERMISSIONS_LOCKED`, "
    "`PROJECT_ID_REQUIRED`, `PROJECT_ID_INVALID`.",
    401: "`AUTHENTICATION_REQUIRED`, `AUTHORIZATION_MALFORMED`, `KEY_INVALID`, `KEY_REVOKED`, "
    "`KEY_EXPIRED`, `KEY_FORMAT_DEPRECATED`, `TOKEN_INVALID`, `TOKEN_EXPIRED`, "
    '`INVALID_CREDENTIALS`. Carries `WWW-Authenticate: Bearer realm="sigsentry"`.',
    403: "`PERMISSION_DENIED` (`details.required`), `KEY_MANAGEMENT_FORBIDDEN`, "
    "`PROJECT_MISMATCH`, `ORIGIN_NOT_ALLOWED`.",
    404: "`NOT_FOUND`, or `PROJECT_NOT_FOUND` for a project outside the caller's reach.",
    405: "`METHOD_NOT_ALLOWED`.",
    409: "`LAST_OWNER`: an organization always keeps one owner.",
    429: "`RATE_LIMITED`; `Retry-After` says when to try again.",
    503: "`SERVICE_UNAVAILABLE`: the database is unreachable.",
}


def error_responses(*statuses: int) -> dict[int, OpenApiResponse]:
    """The SPEC §3 error body for each status (plus 503, which any endpoint can answer)."""
    return {
        status: OpenApiResponse(ErrorSerializer, description=_ERROR_DESCRIPTIONS[status])
        for status in (*statuses, 503)
    }


def paginated(serializer_class: type[serializers.Serializer], name: str):
    """`{"results": [...], "next": <url or null>}` around `serializer_class`."""
    return inline_serializer(
        name=name,
        fields={
            "results": serializer_class(many=True),
            "next": serializers.URLField(allow_null=True, help_text="The next page, or null."),
        },
    )


class MintedKeySchema(OpenApiSerializerExtension):
    """The mint/roll response as `allOf: [Key, {key}]`: one Key shape, not two copies."""

    target_class = "apps.apikeys.serializers.MintedKeySerializer"

    def map_serializer(self, auto_schema, direction):
        key = auto_schema.resolve_serializer(KeySerializer, direction)
        plaintext = {
            "type": "object",
            "required": ["key"],
            "properties": {
                "key": {
                    "type": "string",
                    "readOnly": True,
                    "description": "The full key. Shown in this response only.",
                }
            },
        }
        return {"allOf": [key.ref, plaintext]}


class IdPathAutoSchema(AutoSchema):
    """Path variables named `*_id` are UUIDs; a GET of a collection path is a `_list`.

    The URL patterns accept any text there so that a malformed id gets the
    resource's own 404 (PROJECT_NOT_FOUND or NOT_FOUND) from the view.
    """

    def get_operation_id(self):
        operation_id = super().get_operation_id()
        if self.method == "GET" and not self.path.endswith("}"):
            operation_id = operation_id.removesuffix("_retrieve") + "_list"
        return operation_id

    def get_override_parameters(self):
        ids = [
            OpenApiParameter(name, OpenApiTypes.UUID, OpenApiParameter.PATH)
            for name in uritemplate.variables(self.path)
            if name.endswith("_id")
        ]
        return [*ids, *super().get_override_parameters()]


#: The query parameters of a paginated list (sigsentry.api.Pagination).
PAGE_PARAMETERS = [
    OpenApiParameter(
        "limit",
        OpenApiTypes.INT,
        OpenApiParameter.QUERY,
        description="Page size, 1 to 100 (default 50).",
    ),
    OpenApiParameter(
        "cursor",
        OpenApiTypes.STR,
        OpenApiParameter.QUERY,
        description="Opaque; follow the `next` URL of the previous page.",
    ),
]
