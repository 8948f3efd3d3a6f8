"""drf-spectacular extensions of the key app.

* `BearerAuthenticationScheme` describes `BearerAuthentication`: an API key or
  a JWT in `Authorization: Bearer`, or the dashboard's HttpOnly `ss_access`
  cookie (unsafe methods then need the CSRF token). Views that only a person
  may call (`ManagementView`s, and views marked `session_only`) list the JWT
  and cookie schemes only.
* `MintedKeySchema` documents the mint/roll response as the Key object plus `key`.
* `KeyKindAutoSchema` documents each collection's request bodies: one view class
  serves the three collections, and the body depends on the kind its URL names.

The shared helpers (error bodies, pagination, path ids) are in `core.openapi`.
Imported by `ApikeysConfig.ready()` so the extensions are registered before any
schema is generated.
"""

from __future__ import annotations

from drf_spectacular.extensions import (
    OpenApiAuthenticationExtension,
    OpenApiSerializerExtension,
)

from apps.accounts.cookies import ACCESS_COOKIE
from apps.apikeys.serializers import KeySerializer
from core.api import ManagementView
from core.openapi_schema import IdPathAutoSchema

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


class KeyKindAutoSchema(IdPathAutoSchema):
    """The request body of a key view's POST or PATCH: `view.inputs[view.kind]`, the
    serializer of the kind of key the URL pattern gave the view (apps.apikeys.api_urls)."""

    def get_request_serializer(self):
        serializer = self.view.inputs.get(self.view.kind)
        return serializer if serializer is not None else super().get_request_serializer()
