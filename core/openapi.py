"""OpenAPI helpers shared by every `/v1` view (drf-spectacular).

* `ErrorSerializer` is the SPEC §3 error body; `error_responses()` attaches it
  to the statuses an operation can answer.
* `core.openapi_schema` types the `*_id` path variables as UUIDs (every view's schema), the
  `name_path_variables_as_spec` hook names them as SPEC.md does (`{projectId}`, `{id}`);
  `paginated()` and `PAGE_PARAMETERS` describe the `{results, next}` lists, and the
  `declare_response_headers` hook the headers responses carry.
* `request_keywords()` adds to a request body what drf-spectacular cannot read from
  the fields (`required` for a PATCH body); the `add_request_keywords` hook writes them
  in, and closes every write body (`additionalProperties: false`, a PATCH's
  `minProperties: 1`) as the API does (`core.api.object_body`).
* `SchemaView` (`/v1/schema`) and `DocsView` (`/v1/docs`) serve the document and its
  page to anyone (SPEC §4.8; `SERVE_AUTHENTICATION` reads no credential) and answer
  their errors with the SPEC §3 body. The document is built once per process
  (`DocumentOncePerProcess`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import uritemplate
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db.models import Choices
from django.dispatch import receiver
from django.utils import translation
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.plumbing import deep_import_string
from drf_spectacular.renderers import (
    OpenApiJsonRenderer,
    OpenApiJsonRenderer2,
    OpenApiYamlRenderer,
    OpenApiYamlRenderer2,
)
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema_serializer,
    inline_serializer,
)
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework import serializers
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="A SPEC §3 error code, e.g. `KEY_REVOKED`.")
    message = serializers.CharField(help_text="For people; never echoes a credential.")
    details = serializers.DictField(
        required=False,
        help_text=(
            "`fields` (field → messages) for VALIDATION_ERROR, `required` (the missing "
            "permission, `role:admin` or `role:owner`, ...) for PERMISSION_DENIED."
        ),
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


_ERROR_DESCRIPTIONS = {
    400: "`VALIDATION_ERROR` (bad body or query; `details.fields`), `PERMISSIONS_LOCKED`, "
    "`PROJECT_ID_REQUIRED`, `PROJECT_ID_INVALID`.",
    401: "`AUTHENTICATION_REQUIRED`, `AUTHORIZATION_MALFORMED`, `KEY_INVALID`, `KEY_REVOKED`, "
    "`KEY_EXPIRED`, `KEY_FORMAT_DEPRECATED`, `TOKEN_INVALID`, `TOKEN_EXPIRED`. "
    'Carries `WWW-Authenticate: Bearer realm="sigsentry"`, with '
    '`error="invalid_request"` for a malformed Authorization header and '
    '`error="invalid_token"` for a credential that was refused.',
    403: "`PERMISSION_DENIED` (`details.required` names what the caller lacks: a permission "
    "such as `config:write`, the least role that may (`role:admin`, `role:owner`) when the "
    "caller's role is refused, `credential:session` for an API key where only a person's "
    "session may call, `header:X-CSRFToken` for a cookie request without the CSRF token), "
    "`KEY_MANAGEMENT_FORBIDDEN`, "
    "`PROJECT_MISMATCH` (also an organization key outside its `projectIds`), "
    "`ORIGIN_NOT_ALLOWED`, `IP_NOT_ALLOWED` (a client IP outside the key's `allowedIps`).",
    404: "`NOT_FOUND`, or `PROJECT_NOT_FOUND` for a project outside the caller's reach.",
    405: "`METHOD_NOT_ALLOWED`.",
    409: "`LAST_OWNER`: an organization always keeps one owner.",
    429: "`RATE_LIMITED`: throttled, or over the key's own `rateLimit`; `Retry-After` says "
    "when to try again. Every response to a key with a `rateLimit` carries "
    "`X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` (Unix seconds).",
    503: "`SERVICE_UNAVAILABLE`: the database is unreachable.",
}


#: The 401s of the operations that check a credential in their body, not in Authorization.
WRONG_PASSWORD_OR_CODE = (
    "`INVALID_CREDENTIALS`: the email and password, or the code and mfaToken, were not "
    "right (one answer whether or not the account exists)."
)
WRONG_REFRESH_TOKEN = (
    "`TOKEN_INVALID`, `TOKEN_EXPIRED`: the refresh token sent (in the body, or the cookie) "
    "is not one, was used already (which ends its session) or has expired."
)
WRONG_SIGNATURE = (
    "`SIGNATURE_INVALID`: the report's signature headers are missing, or do not verify "
    "with a configured GitHub key."
)
#: The 401 of an operation that also checks the current password in its body.
OR_WRONG_PASSWORD = (
    _ERROR_DESCRIPTIONS[401] + " `INVALID_CREDENTIALS`: the current password sent was not right."
)
#: The 429 of an operation no API key calls: its throttles only.
THROTTLED = "`RATE_LIMITED`: throttled; `Retry-After` says when to try again."


def error_responses(
    *statuses: int, described: dict[int, str] | None = None
) -> dict[int, OpenApiResponse]:
    """The SPEC §3 error body for each status (plus 503, which any endpoint can answer),
    described with the codes it may carry: `described` gives an operation's own, where the
    usual ones would name codes it never answers (an integration audit: the login's 401
    listed every key code)."""
    descriptions = _ERROR_DESCRIPTIONS | (described or {})
    return {
        status: OpenApiResponse(ErrorSerializer, description=descriptions[status])
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


#: The specification extension that carries `request_keywords` to the hook.
REQUEST_KEYWORDS = "x-request-keywords"


def request_keywords(**keywords):
    """A serializer decorator: JSON Schema keywords for its request body that no field can
    say, e.g. `required` for a PATCH body (which the document calls partial) or
    `additionalProperties=False` for a nested object. Subclasses inherit them."""
    return extend_schema_serializer(extensions={REQUEST_KEYWORDS: keywords})


#: The methods whose bodies write: every one is closed (`core.api.json_object`).
WRITE_METHODS = ("post", "put", "patch")


def add_request_keywords(result, generator, request, public):
    """drf-spectacular postprocessing hook (SPECTACULAR_SETTINGS): writes each
    `request_keywords` into its serializer's request component (`...Request`), and drops
    the carrier from every component (a response keeps its shape open, for new fields).
    Then every object body of a POST, PUT or PATCH is closed as the API closes it
    (`core.api.object_body`): `additionalProperties: false`, and a PATCH's
    `minProperties: 1`, so that a client or a fuzzer reading the document never takes a
    body with a member the endpoint refuses for valid, nor an empty PATCH."""
    schemas = result.get("components", {}).get("schemas", {})
    for name, schema in schemas.items():
        keywords = schema.pop(REQUEST_KEYWORDS, None)
        if keywords and name.endswith("Request"):
            schema.update(keywords)
    for method, operation in _operations_by_method(result):
        body = operation.get("requestBody")
        for media in (body or {}).get("content", {}).values():
            component = _object_component(schemas, media.get("schema", {}))
            if component is None:
                continue
            if method in WRITE_METHODS:
                component["additionalProperties"] = False
            if method == "patch":
                component.setdefault("minProperties", 1)
            # A body that must name something is a body that must be sent: drf-spectacular
            # makes every PATCH body optional, and generated clients let it be left out (an
            # SDK audit).
            if component.get("required") or component.get("minProperties"):
                body["required"] = True
    return result


def _object_component(schemas: dict, schema: dict) -> dict | None:
    """The object component a request body's schema refers to (not a list's items: the one
    such body, GitHub's secret-scanning report, is GitHub's format), or None."""
    component = schemas.get(schema.get("$ref", "").rsplit("/", 1)[-1])
    if component is None or component.get("type") != "object":
        return None
    return component


def _operations_by_method(result) -> Iterator[tuple[str, dict]]:
    """Every operation of the document with its method (an item's other members, its
    `parameters`, are not operations)."""
    for item in result.get("paths", {}).values():
        for method, operation in item.items():
            if isinstance(operation, dict):
                yield method, operation


def _operations(result) -> Iterator[dict]:
    """Every operation of the document."""
    return (operation for _, operation in _operations_by_method(result))


#: Response headers (SPEC §3, §2.3, §4.10), as components the responses refer to.
RESPONSE_HEADERS = {
    "WWW-Authenticate": (
        "string",
        'The RFC 6750 challenge: `Bearer realm="sigsentry"`, with `error="invalid_token"` for '
        'a refused credential or `error="invalid_request"` for a malformed header.',
    ),
    "Retry-After": ("integer", "Seconds to wait before trying again."),
    "X-RateLimit-Limit": ("integer", "A key with a `rateLimit`: its requests per window."),
    "X-RateLimit-Remaining": ("integer", "A key with a `rateLimit`: requests left in the window."),
    "X-RateLimit-Reset": (
        "integer",
        "A key with a `rateLimit`: when the oldest request leaves the window (Unix seconds).",
    ),
    "Deprecation": ("string", "A legacy key (RFC 9745): `@<Unix seconds>` of its deprecation."),
    "Sunset": ("string", "A legacy key (RFC 8594): the HTTP date it stops working."),
    "X-Request-Id": (
        "string",
        "This request's id (`req_` and 24 hex digits): quote it to support; every log line "
        "of the request carries it.",
    ),
}
_KEY_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
_LEGACY_HEADERS = ("Deprecation", "Sunset")


def declare_response_headers(result, generator, request, public):
    """drf-spectacular postprocessing hook (SPECTACULAR_SETTINGS): the headers each response
    can carry, as `headers` a client generator reads (the descriptions say it in prose):
    `X-Request-Id` on every answer, `WWW-Authenticate` on a 401, `Retry-After` on a 429 and
    a 503, and on every answer of an operation that reads a credential, a rate-limited
    key's `X-RateLimit-*` and a legacy key's `Deprecation` and `Sunset`."""
    components = result.setdefault("components", {}).setdefault("headers", {})
    for name, (kind, description) in RESPONSE_HEADERS.items():
        components[name] = {"schema": {"type": kind}, "description": description}

    def ref(name: str) -> dict:
        return {"$ref": f"#/components/headers/{name}"}

    for operation in _operations(result):
        # Any operation that reads a credential: an API key calling one a key may not (a
        # JWT-only one) is answered too, its headers on the refusal (an SDK audit).
        by_key = bool(operation.get("security"))
        for status, response in operation.get("responses", {}).items():
            names = ["X-Request-Id", *(_KEY_HEADERS + _LEGACY_HEADERS if by_key else ())]
            if status == "401":
                names.append("WWW-Authenticate")
            if status in ("429", "503"):
                names.append("Retry-After")
            response.setdefault("headers", {}).update({n: ref(n) for n in names})
    return result


def throttled_wherever_a_credential_is_read(result, generator, request, public):
    """drf-spectacular postprocessing hook (SPECTACULAR_SETTINGS): a `429` on every
    operation that reads a credential, which its view may not name: refused credentials
    are throttled per client on every one of them, and a key's own `rateLimit` applies
    wherever it calls (an SDK audit: 36 operations answered a 429 their schema did not
    list, which generated clients raised as unexpected)."""
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for operation in _operations(result):
        if not operation.get("security"):
            continue
        responses = operation.setdefault("responses", {})
        if "429" not in responses:
            responses["429"] = {
                "content": error,
                "description": _ERROR_DESCRIPTIONS[429]
                + " Refused credentials are throttled per client too.",
            }
    return result


def nullable_references_as_oas_30(result, generator, request, public):
    """drf-spectacular postprocessing hook (SPECTACULAR_SETTINGS): a nullable reference (a
    key's `rateLimit`, `createdBy`; `/v1/me`'s `project`) written as OpenAPI 3.0.3 allows it,
    `oneOf` the object and null. drf-spectacular writes `allOf: [ref]` beside `nullable`,
    which 3.0.3 ignores without a `type` there: strict validators (openapi-core's) refused
    every key without a rate limit (an integration audit; drf-spectacular issue #925)."""

    def rewrite(node):
        if isinstance(node, dict):
            if (
                node.get("nullable") is True
                and "type" not in node
                and len(node.get("allOf", ())) == 1
            ):
                rest = {k: v for k, v in node.items() if k not in ("allOf", "nullable")}
                # No `type`: with `object` there, generators typed the field `RateLimit |
                # dict` and refused every key without one (an SDK audit, datamodel-codegen).
                null = {"nullable": True, "enum": [None]}
                node = {"oneOf": [node["allOf"][0], null], **rest}
            return {key: rewrite(value) for key, value in node.items()}
        if isinstance(node, list):
            return [rewrite(value) for value in node]
        return node

    return rewrite(result)


def one_enum_per_value_set(result, generator, request, public):
    """drf-spectacular postprocessing hook (SPECTACULAR_SETTINGS), after its enum hook, which
    names the enums of components only, and apart when their labels differ: one component
    per set of values of a field, which generated clients make one enum class of (an SDK
    audit, openapi-python-client).

    * A parameter's enum is the component of its values typing a field of its name
      (`granularity`: `GranularityEnum`, the one `KeyUsage` answers), or the
      `ENUM_NAME_OVERRIDES` entry of them (`action`: `AuditActionEnum`). Inline, the client
      had one class per operation (`ProjectsApiKeysUsageGranularity`,
      `ProjectsSdkKeysUsageGranularity`, ...). An inline enum no name covers fails the
      generation: name it there. A null among its values makes it nullable, as
      drf-spectacular leaves null out of a field's enum component.
    * Components of the same values typing fields of the same names are the one of the
      shortest name: `/v1/me`'s key had `MeKeyDetailTypeEnum` beside the key object's
      `KeyTypeEnum` (their labels differ). Of other fields they stay apart, as
      drf-spectacular keeps them: one value added to either would rename the other's class
      in every generated client (`ENUM_NAME_OVERRIDES` names one set for several fields)."""
    schemas = result["components"]["schemas"]
    fields = _enum_fields(schemas)
    alike: dict[tuple[frozenset, frozenset], list[str]] = {}
    for name, schema in schemas.items():
        if "enum" in schema:
            key = (frozenset(schema["enum"]), fields.get(name, frozenset()))
            alike.setdefault(key, []).append(name)
    kept = {key: _shortest(names) for key, names in alike.items()}
    overridden = {
        frozenset(v for v in _choice_values(choices) if v is not None): name
        for name, choices in settings.SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"].items()
    }
    renamed = {
        f"#/components/schemas/{name}": f"#/components/schemas/{kept[key]}"
        for key, names in alike.items()
        for name in names
        if name != kept[key]
    }
    for ref in renamed:
        del schemas[ref.rpartition("/")[2]]
    for item in result.get("paths", {}).values():
        for operation in item.values():
            for parameter in operation.get("parameters", ()):
                schema = parameter["schema"]
                if "enum" not in schema:
                    continue
                values = frozenset(v for v in schema["enum"] if v is not None)
                of_field = [
                    n for (v, f), n in kept.items() if v == values and parameter["name"] in f
                ]
                name = _shortest(of_field) if of_field else overridden.get(values)
                if not name:  # not an assert: `python -O` would write a component `None`
                    raise ImproperlyConfigured(
                        f"Name parameter {parameter['name']!r}'s enum (ENUM_NAME_OVERRIDES)."
                    )
                schemas.setdefault(name, {"enum": sorted(values), "type": schema["type"]})
                rest = {k: v for k, v in schema.items() if k not in ("enum", "type")}
                if None in schema["enum"]:
                    rest["nullable"] = True  # `nullable_references_as_oas_30` writes it for 3.0.3
                reference = {"$ref": f"#/components/schemas/{name}"}
                # 3.0.3 ignores what stands beside a `$ref`: a default goes beside an `allOf`
                parameter["schema"] = {"allOf": [reference], **rest} if rest else reference

    def rewrite(node):
        if isinstance(node, dict):
            return {k: renamed.get(v, v) if k == "$ref" else rewrite(v) for k, v in node.items()}
        if isinstance(node, list):
            return [rewrite(value) for value in node]
        return node

    result = rewrite(result)
    result["components"]["schemas"] = dict(sorted(result["components"]["schemas"].items()))
    return result


def _enum_fields(schemas: dict) -> dict[str, frozenset[str]]:
    """The names of the properties each component types, directly, as their `items` or in
    their `allOf` / `oneOf` (drf-spectacular names an enum after its field: `type` gives
    `KeyTypeEnum` and `MeKeyDetailTypeEnum`)."""
    fields: dict[str, set[str]] = {}

    def walk(node):
        if isinstance(node, list):
            for value in node:
                walk(value)
        if not isinstance(node, dict):
            return
        for field, prop in (node.get("properties") or {}).items():
            for typed in (prop, prop.get("items", {})) if isinstance(prop, dict) else ():
                for part in (typed, *typed.get("allOf", ()), *typed.get("oneOf", ())):
                    if "$ref" in part:
                        fields.setdefault(part["$ref"].rpartition("/")[2], set()).add(field)
        for value in node.values():
            walk(value)

    walk(schemas)
    return {name: frozenset(names) for name, names in fields.items()}


def _shortest(names: list[str]) -> str:
    return min(names, key=lambda n: (len(n), n))


def _choice_values(choices) -> list:
    """The values of an `ENUM_NAME_OVERRIDES` entry: choices, or their import path."""
    if isinstance(choices, str):
        choices = deep_import_string(choices)
    if isinstance(choices, type) and issubclass(choices, Choices):
        return list(choices.values)
    return [c if isinstance(c, str) else c[0] for c in choices]


#: Path variables as SPEC.md writes them; the URL patterns name them for the views' keyword
#: arguments (`org_id`). Any other `*_id` is the path's own object, `{id}` in SPEC.md.
SPEC_PATH_VARIABLES = {
    "org_id": "orgId",
    "project_id": "projectId",
    "key_id": "keyId",
    "user_id": "userId",
}


def name_path_variables_as_spec(result, generator, request, public):
    """drf-spectacular postprocessing hook (SPECTACULAR_SETTINGS): the document's path
    templates and path parameters named as in SPEC.md (`/v1/projects/{projectId}/sdk-keys`,
    `.../webhooks/{id}`), the names clients and their generated code look up."""
    paths = {}
    for template, item in result.get("paths", {}).items():
        names = {
            name: SPEC_PATH_VARIABLES.get(name, "id")
            for name in uritemplate.variables(template)
            if name.endswith("_id")
        }
        assert len(set(names.values())) == len(names), f"two path variables named alike: {template}"
        for name, spec_name in names.items():
            template = template.replace(f"{{{name}}}", f"{{{spec_name}}}")
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and parameter["name"] in names:
                    parameter["name"] = names[parameter["name"]]
        paths[template] = item
    result["paths"] = paths
    return result


#: The query parameters of a paginated list (core.api.Pagination).
PAGE_PARAMETERS = [
    OpenApiParameter(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": 100},
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


class AnyAcceptNegotiation(DefaultContentNegotiation):
    """DRF's negotiation, but an `Accept` that matches none of the renderers gets the first
    (the document as JSON, the page as HTML) rather than a 406 (no 406 in SPEC §3)."""

    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except NotAcceptable:
            return renderers[0], renderers[0].media_type


class JsonErrorsMixin:
    """Errors as the SPEC §3 JSON body, whatever renders the view's own answers.

    The exception handler builds the body; DRF then renders it with the renderer
    the request negotiated (or the view's first one when negotiation itself
    failed, as for an unknown `?format`): a YAML document or an HTML template
    that knows no error. Choosing JSON here, before the response is finalized,
    is what DRF reads from `request.accepted_renderer`.
    """

    content_negotiation_class = AnyAcceptNegotiation

    def handle_exception(self, exc):
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return super().handle_exception(exc)


class DocumentOncePerProcess(SchemaGenerator):
    """The document is the code's alone: no credential is read (`SERVE_AUTHENTICATION`) and
    every operation is listed (`SERVE_PUBLIC`), so it is built once per process rather than on
    every request (found by the DoS audit: 65 to 100 ms of CPU per anonymous, unthrottled
    GET). Once, whatever the request asks: a `?version=` (drf-spectacular takes any, and only
    relabels `info.version` with it) and a `?lang=` name no other document here, and keeping
    one per value let anyone grow a worker by 1.2 MB a request (found by the review). A
    setting changed (tests) builds it again."""

    documents: ClassVar[dict[bool, dict]] = {}

    def get_schema(self, request=None, public=False):
        document = self.documents.get(public)
        if document is None:
            self.api_version = None
            with translation.override(settings.LANGUAGE_CODE):
                document = super().get_schema(request=request, public=public)
            self.documents[public] = document
        return document


@receiver(setting_changed)
def _build_the_document_again(**kwargs) -> None:
    DocumentOncePerProcess.documents.clear()
    _renderings.clear()


#: (renderer class, variant) → (the document rendered, its bytes): a few entries at most.
_renderings: dict[tuple[type, Any], tuple[Any, bytes]] = {}


class _RenderedOnce:
    """A renderer of the document that keeps the bytes of the document it rendered last, per
    variant of its output (YAML took 57 ms of CPU a request). A variant is what changes the
    bytes, not what the client wrote: JSON's indent (DRF bounds it to 0 to 8), none for YAML;
    so `;q=0.9` or any other parameter is served from what is kept, and nothing a client
    sends grows it."""

    def variant(self, accepted_media_type, renderer_context) -> Any:
        return None

    def render(self, data, accepted_media_type=None, renderer_context=None):
        key = (type(self), self.variant(accepted_media_type, renderer_context or {}))
        kept = _renderings.get(key)
        if kept is not None and kept[0] is data:
            return kept[1]
        rendered = super().render(data, accepted_media_type, renderer_context)
        _renderings[key] = (data, rendered)
        return rendered


class _IndentedJson(_RenderedOnce):
    def variant(self, accepted_media_type, renderer_context) -> Any:
        return self.get_indent(accepted_media_type, renderer_context)


class JsonDocument(_IndentedJson, OpenApiJsonRenderer):
    pass


class JsonDocument2(_IndentedJson, OpenApiJsonRenderer2):
    pass


class YamlDocument(_RenderedOnce, OpenApiYamlRenderer):
    pass


class YamlDocument2(_RenderedOnce, OpenApiYamlRenderer2):
    pass


class SchemaView(JsonErrorsMixin, SpectacularAPIView):
    """`GET /v1/schema`: the OpenAPI document, JSON unless YAML is asked for (`?format=yaml`
    or `Accept: application/vnd.oai.openapi`). JSON first, as the API answers: a client that
    states no preference (curl, `requests`, a test client) can parse it as it parses the
    rest of the API."""

    generator_class = DocumentOncePerProcess
    renderer_classes = [JsonDocument, JsonDocument2, YamlDocument, YamlDocument2]
    # The one version there is. drf-spectacular writes the version into the answer's
    # `Content-Disposition` filename, and took it from `?version=` as sent: a control
    # character was a 500, a quote chose the name of a download from this site (found by
    # an HTTP audit). Set here, the query parameter is never read.
    api_version = settings.SPECTACULAR_SETTINGS["VERSION"]
    # No OPTIONS: DRF's description of a view, labelled as an OpenAPI document.
    http_method_names = ["get", "head"]


class DocsView(JsonErrorsMixin, SpectacularSwaggerSplitView):
    """`GET /v1/docs`: Swagger UI for the document; `?script` serves its init script."""

    template_name = "api/swagger_ui.html"  # no inline style: the dashboard's CSP holds
    # No OPTIONS: DRF's description of a view has no template here (it was a 500).
    http_method_names = ["get", "head"]
