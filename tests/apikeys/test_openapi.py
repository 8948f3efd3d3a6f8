"""The OpenAPI document (/v1/schema) and its page (/v1/docs) (SPEC §4.8).

Besides shape checks on the document, real responses of the management and
auth endpoints are validated against the schemas it publishes, so the
documentation cannot drift from what the API answers.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.test import override_settings
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer, OpenApiYamlRenderer
from rest_framework.test import APIClient

from apps.accounts import services as account_services
from apps.apikeys.keyformat import KeyKind
from apps.audit.services import Action, record_event
from core.openapi import (
    SPEC_PATH_VARIABLES,
    DocumentOncePerProcess,
    nullable_references_as_oas_30,
    one_enum_per_value_set,
)
from tests.apikeys.openapi_helpers import undeclared, validator
from tests.factories import make_key
from tests.orgs.helpers import bearer_client, collection_url, cookie_client, key_url, user_client
from tests.pages import assert_no_inline_code

pytestmark = pytest.mark.django_db

#: Every endpoint of SPEC §4.1 to §4.3 and §4.7, with its methods.
MANAGEMENT_AND_AUTH_OPERATIONS = {
    "/v1/auth/signup": {"post"},
    "/v1/auth/login": {"post"},
    "/v1/auth/refresh": {"post"},
    "/v1/auth/logout": {"post"},
    "/v1/me": {"get"},
    "/v1/organizations": {"get", "post"},
    "/v1/organizations/{orgId}": {"patch"},
    "/v1/organizations/{orgId}/projects": {"get", "post"},
    "/v1/organizations/{orgId}/members": {"get", "post"},
    "/v1/organizations/{orgId}/members/{userId}": {"patch", "delete"},
    "/v1/projects/{projectId}/sdk-keys": {"get", "post"},
    "/v1/projects/{projectId}/sdk-keys/{keyId}": {"get", "patch"},
    "/v1/projects/{projectId}/sdk-keys/{keyId}/revoke": {"post"},
    "/v1/projects/{projectId}/sdk-keys/{keyId}/roll": {"post"},
    "/v1/projects/{projectId}/api-keys": {"get", "post"},
    "/v1/projects/{projectId}/api-keys/{keyId}": {"get", "patch"},
    "/v1/projects/{projectId}/api-keys/{keyId}/revoke": {"post"},
    "/v1/projects/{projectId}/api-keys/{keyId}/roll": {"post"},
    "/v1/organizations/{orgId}/api-keys": {"get", "post"},
    "/v1/organizations/{orgId}/api-keys/{keyId}": {"get", "patch"},
    "/v1/organizations/{orgId}/api-keys/{keyId}/revoke": {"post"},
    "/v1/organizations/{orgId}/api-keys/{keyId}/roll": {"post"},
    "/v1/organizations/{orgId}/audit-events": {"get"},
    "/v1/leaked-keys": {"post"},
}
CREDENTIAL_FREE = {"/v1/auth/signup", "/v1/auth/login", "/v1/auth/refresh", "/v1/leaked-keys"}
PEOPLE_ONLY = [{"jwtAuth": []}, {"sessionCookie": []}]


@pytest.fixture(scope="module")
def document(django_db_blocker) -> dict[str, Any]:
    with django_db_blocker.unblock():
        response = APIClient().get("/v1/schema", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def spec_name(variable: str) -> str:
    """A URL pattern's variable as the document (and SPEC.md) names it."""
    if variable.endswith("_id"):
        return SPEC_PATH_VARIABLES.get(variable, "id")
    return variable


def assert_matches(document: dict, response, status: int | None = None) -> None:
    """The response body is valid against the schema the document gives for it, which
    declares each of its members (a generated client types only those)."""
    path, method = response.wsgi_request.resolver_match.route, response.wsgi_request.method
    template = "/" + re.sub(r"<str:(\w+)>", lambda m: "{" + spec_name(m[1]) + "}", path)
    operation = document["paths"][template][method.lower()]
    content = operation["responses"][str(status or response.status_code)]["content"]
    schema = content["application/json"]["schema"]
    errors = [error.message for error in validator(document, schema).iter_errors(response.json())]
    assert not errors, (template, method, errors)
    assert undeclared(document, schema, response.json()) == [], (template, method)


# The document


@pytest.mark.parametrize(
    ("accept", "query", "starts"),
    [
        (None, {}, b"{"),
        ("*/*", {}, b"{"),
        ("application/json", {}, b"{"),
        ("application/vnd.oai.openapi", {}, b"openapi: 3"),
        (None, {"format": "yaml"}, b"openapi: 3"),
        (None, {"format": "json"}, b"{"),
    ],
)
def test_the_document_is_json_unless_yaml_is_asked_for(accept, query, starts):
    headers = {"HTTP_ACCEPT": accept} if accept else {}

    response = APIClient().get("/v1/schema", query, **headers)

    assert response.status_code == 200
    assert response.content.startswith(starts)


@pytest.mark.parametrize(
    ("query", "renderer"),
    [({"format": "json"}, OpenApiJsonRenderer), ({"format": "yaml"}, OpenApiYamlRenderer)],
)
def test_the_document_is_built_and_rendered_once_per_process(monkeypatch, query, renderer):
    """Found by the DoS audit: every anonymous GET built the 526 KB document again (65 to 100
    ms of CPU) and rendered it (YAML: 57 ms more). Built and rendered once, it is served
    as the same bytes; a setting changed builds it again."""
    built, rendered = [], []
    monkeypatch.setattr(SchemaGenerator, "get_schema", counted(SchemaGenerator.get_schema, built))
    monkeypatch.setattr(renderer, "render", counted(renderer.render, rendered))
    DocumentOncePerProcess.documents.clear()

    answers = [APIClient().get("/v1/schema", query).content for _ in range(3)]
    assert len(built) == 1 and len(rendered) == 1
    assert answers[0] == answers[1] == answers[2]

    with override_settings(SPECTACULAR_SETTINGS={**settings.SPECTACULAR_SETTINGS}):
        again = APIClient().get("/v1/schema", query).content
    assert len(built) == 2 and len(rendered) == 2
    assert again == answers[0]


def test_no_query_or_header_grows_what_is_kept_or_builds_the_document_again(monkeypatch):
    """Found by the review: `?version=` and `?lang=` (drf-spectacular takes any value) each
    built and kept one more document, 1.2 MB a request; an `Accept` with `;q=0.9` rendered
    the YAML again every time."""
    built, rendered = [], []
    monkeypatch.setattr(SchemaGenerator, "get_schema", counted(SchemaGenerator.get_schema, built))
    monkeypatch.setattr(
        OpenApiYamlRenderer, "render", counted(OpenApiYamlRenderer.render, rendered)
    )
    DocumentOncePerProcess.documents.clear()
    client = APIClient()

    versions = {
        client.get("/v1/schema", {"version": f"x{n}"}).json()["info"]["version"] for n in range(5)
    }
    languages = {client.get("/v1/schema", {"lang": f"x{n}"}).content for n in range(5)}
    yaml_answers = {
        client.get("/v1/schema", HTTP_ACCEPT=f"application/vnd.oai.openapi;q=0.{n};x{n}=1").content
        for n in range(1, 6)
    }

    assert len(built) == 1 and list(DocumentOncePerProcess.documents) == [True]
    assert versions == {"1.0.0"} and len(languages) == 1
    assert len(rendered) == 1 and len(yaml_answers) == 1


def test_an_indent_asked_for_is_honoured_and_kept_with_the_others():
    media_type = "application/vnd.oai.openapi+json"
    plain = APIClient().get("/v1/schema", HTTP_ACCEPT=media_type)
    indented = [
        APIClient().get("/v1/schema", HTTP_ACCEPT=f"{media_type}; indent={n}").content
        for n in (2, 2, 99, 8)
    ]
    after = APIClient().get("/v1/schema", HTTP_ACCEPT=f"{media_type}; q=0.5")

    assert plain.content.startswith(b'{\n    "openapi"') and plain.content == after.content
    assert indented[0].startswith(b'{\n  "openapi"') and indented[0] == indented[1]
    assert indented[2] == indented[3] and indented[2].startswith(b'{\n        "openapi"')


def counted(function, calls: list):
    def call(*args, **kwargs):
        calls.append(1)
        return function(*args, **kwargs)

    return call


def test_schema_is_an_openapi_3_document(document):
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] == "SigSentry API"


def test_schema_describes_every_auth_and_management_endpoint(document):
    for path, methods in MANAGEMENT_AND_AUTH_OPERATIONS.items():
        assert path in document["paths"], path
        assert methods <= set(document["paths"][path]), path


def test_schema_types_path_ids_as_uuids(document):
    parameters = document["paths"]["/v1/projects/{projectId}/sdk-keys/{keyId}/roll"]["post"][
        "parameters"
    ]

    assert {p["name"]: p["schema"] for p in parameters if p["in"] == "path"} == {
        "projectId": {"type": "string", "format": "uuid"},
        "keyId": {"type": "string", "format": "uuid"},
    }


def operations(document):
    for template, item in document["paths"].items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "responses" in operation:
                yield template, method, operation


def test_every_path_id_is_a_uuid_and_every_page_size_bounded(document):
    """Found by an audit: the analysis and configuration ids were plain strings and `limit`
    had no bounds, so generated clients and schemathesis sent what the API refuses."""
    parameters = [
        (template, parameter)
        for template, _method, operation in operations(document)
        for parameter in operation.get("parameters", [])
    ]
    not_uuid = {
        (template, p["name"])
        for template, p in parameters
        if p["in"] == "path" and p["schema"] != {"type": "string", "format": "uuid"}
    }
    assert not_uuid == {("/v1/invitations/{token}/accept", "token")}
    limits = [p["schema"] for _template, p in parameters if p["name"] == "limit"]
    assert limits and all(s == {"type": "integer", "minimum": 1, "maximum": 100} for s in limits)
    # one out of bounds is a 400 (found by a SPEC audit: three lists did not say so)
    paged = [
        (template, operation["responses"])
        for template, _method, operation in operations(document)
        if any(p["name"] == "limit" for p in operation.get("parameters", []))
    ]
    assert [template for template, responses in paged if "400" not in responses] == []


def test_responses_declare_their_headers(document):
    headers = document["components"]["headers"]
    for template, method, operation in operations(document):
        # Any operation that reads a credential: a key calling a JWT-only one gets its
        # headers on the refusal (an SDK audit).
        by_key = bool(operation.get("security"))
        for status, response in operation["responses"].items():
            declared = set(response.get("headers", {}))
            assert all(headers[h] for h in declared)
            assert "X-Request-Id" in declared, (template, method, status)
            if status == "401":
                assert "WWW-Authenticate" in declared, (template, method)
            if status in ("429", "503"):
                assert "Retry-After" in declared, (template, method)
            if by_key:
                assert {"X-RateLimit-Remaining", "Sunset"} <= declared, (template, method, status)
    analyses = document["paths"]["/v1/analyses"]["get"]["responses"]["200"]["headers"]
    assert set(analyses) == {
        "X-Request-Id",
        "X-RateLimit-Limit",
        "X-RateLimit-Remaining",
        "X-RateLimit-Reset",
        "Deprecation",
        "Sunset",
    }


def test_what_generated_clients_read_is_declared(document):
    """Found by an SDK audit (a client generated with openapi-python-client and
    datamodel-code-generator, driven against the API)."""
    secured = [(t, m, o) for t, m, o in operations(document) if o.get("security")]
    # every operation that reads a credential can answer 429 (refused credentials are
    # throttled per client): 36 did not say so, and the clients raised it as unexpected
    assert secured and [(t, m) for t, m, o in secured if "429" not in o["responses"]] == []
    # X-Project-Id is text with a UUID's pattern: as `format: uuid` the client refused to
    # send a UUID in a header
    [header] = [
        p
        for p in document["paths"]["/v1/config"]["get"]["parameters"]
        if p["name"] == "X-Project-Id"
    ]
    assert header["schema"]["type"] == "string" and "format" not in header["schema"]
    assert re.fullmatch(header["schema"]["pattern"], str(uuid.uuid4()))
    # a nullable reference's null branch has no type: `object` there made `RateLimit | dict`
    rate_limit = document["components"]["schemas"]["Key"]["properties"]["rateLimit"]
    assert rate_limit["oneOf"][1] == {"nullable": True, "enum": [None]}
    # a PATCH body that must name something must be sent
    schemas = document["components"]["schemas"]
    assert schemas["PatchedMemberRoleInputRequest"]["required"] == ["role"]
    assert schemas["PatchedOrganizationUpdateInputRequest"]["required"] == ["keyMaxLifetimeDays"]
    for template in ("/v1/organizations/{orgId}/members/{userId}", "/v1/organizations/{orgId}"):
        assert document["paths"][template]["patch"]["requestBody"]["required"] is True
    # operations named as a developer would call them, each once
    named = {f"{m.upper()} {t}": o["operationId"] for t, m, o in operations(document)}
    assert len(set(named.values())) == len(named)
    keys = "/v1/projects/{projectId}/api-keys/{keyId}"
    assert [named[f"POST {keys}/revoke"], named[f"POST {keys}/roll"]] == [
        "projects_api_keys_revoke",
        "projects_api_keys_roll",
    ]
    assert named[f"GET {keys}/usage"] == "projects_api_keys_usage"
    assert named[f"PATCH {keys}"] == "projects_api_keys_update"
    # /v1/me's key names its type, scope and permissions as the key object does: as enums
    detail = schemas["MeKeyDetail"]["properties"]
    assert all("$ref" in detail[f] for f in ("type", "scope")), detail
    assert detail["permissions"]["items"] == {"$ref": "#/components/schemas/PermissionsEnum"}
    # every allowedIps branch is typed: a generator reads a branch alone (`list[Any]`)
    mint = schemas["MintSecretKeyInputRequest"]["properties"]["allowedIps"]["items"]
    assert mint["anyOf"] and all(b["type"] == "string" for b in mint["anyOf"])


def test_each_enum_is_one_component_that_parameters_and_bodies_share(document):
    """A client generated from the document (openapi-python-client) had one enum class per
    usage operation for `granularity` (`ProjectsApiKeysUsageGranularity`,
    `ProjectsSdkKeysUsageGranularity`, ...), none the `GranularityEnum` its answer carries,
    an inline `AuditEventsListAction`, and `MeKeyDetailTypeEnum` / `MeKeyDetailScopeEnum`
    beside the key object's `KeyTypeEnum` / `KeyScopeEnum` (an SDK audit)."""
    schemas = document["components"]["schemas"]
    inline = [
        (template, method, p["name"])
        for template, method, operation in operations(document)
        for p in operation.get("parameters", ())
        if "enum" in p["schema"]
    ]
    assert inline == []
    value_sets = [frozenset(s["enum"]) for s in schemas.values() if "enum" in s]
    assert len(value_sets) == len(set(value_sets))

    usage = document["paths"]["/v1/projects/{projectId}/sdk-keys/{keyId}/usage"]["get"]
    [granularity] = usage["parameters"][:1]
    assert granularity["schema"] == {
        "allOf": [{"$ref": "#/components/schemas/GranularityEnum"}],
        "default": "hour",
    }
    assert schemas["KeyUsage"]["properties"]["granularity"] == granularity["schema"]["allOf"][0]
    audit = document["paths"]["/v1/organizations/{orgId}/audit-events"]["get"]
    [action] = [p for p in audit["parameters"] if p["name"] == "action"]
    assert action["schema"] == {"$ref": "#/components/schemas/AuditActionEnum"}
    assert sorted(schemas["AuditActionEnum"]["enum"]) == sorted(Action.ALL)
    # an event's action stays text: a client built before a new action still reads the list
    assert schemas["AuditEvent"]["properties"]["action"]["type"] == "string"
    me_key = schemas["MeKeyDetail"]["properties"]
    assert me_key["type"] == schemas["Key"]["properties"]["type"]
    assert me_key["scope"] == schemas["Key"]["properties"]["scope"]


def enum_document(parameter_enum: list, **components: tuple[str, list]) -> dict:
    """A small document: each component an enum of `values` typing the field `field` of an
    object of its own, and one operation whose query parameter `granularity` is an enum."""
    schemas: dict[str, Any] = {}
    for name, (field, values) in components.items():
        schemas[name] = {"enum": values, "type": "string"}
        ref = {"$ref": f"#/components/schemas/{name}"}
        schemas[f"Of{name}"] = {"type": "object", "properties": {field: ref}}
    parameter = {
        "in": "query",
        "name": "granularity",
        "schema": {"type": "string", "enum": parameter_enum},
    }
    return {
        "components": {"schemas": schemas},
        "paths": {"/v1/x": {"get": {"parameters": [parameter]}}},
    }


def test_a_parameter_enum_holding_null_is_the_fields_component_made_nullable():
    document = enum_document(
        ["day", "hour", None], GranularityEnum=("granularity", ["day", "hour"])
    )

    result = one_enum_per_value_set(document, None, None, True)

    [parameter] = result["paths"]["/v1/x"]["get"]["parameters"]
    ref = {"$ref": "#/components/schemas/GranularityEnum"}
    assert parameter["schema"] == {"allOf": [ref], "nullable": True}
    assert result["components"]["schemas"]["GranularityEnum"]["enum"] == ["day", "hour"]
    written = nullable_references_as_oas_30(result, None, None, True)  # as 3.0.3 reads it
    nullable = written["paths"]["/v1/x"]["get"]["parameters"][0]["schema"]
    assert nullable == {"oneOf": [ref, {"nullable": True, "enum": [None]}]}


def test_a_parameter_enum_named_with_a_null_choice_is_nullable(settings):
    overrides = {"GranularityEnum": [(None, "Default"), ("day", "Day"), ("hour", "Hour")]}
    settings.SPECTACULAR_SETTINGS = {
        **settings.SPECTACULAR_SETTINGS,
        "ENUM_NAME_OVERRIDES": overrides,
    }

    result = one_enum_per_value_set(enum_document(["hour", None, "day"]), None, None, True)

    [parameter] = result["paths"]["/v1/x"]["get"]["parameters"]
    ref = {"$ref": "#/components/schemas/GranularityEnum"}
    assert parameter["schema"] == {"allOf": [ref], "nullable": True}
    granularity = result["components"]["schemas"]["GranularityEnum"]
    assert granularity == {"enum": ["day", "hour"], "type": "string"}


def test_enums_of_the_same_values_are_one_only_for_fields_of_one_name():
    """A `mode` and a `state` both `on`/`off` stay two: as one, a value added to either
    would rename the other's class in every generated client."""
    document = enum_document(
        ["day", "hour"],
        KeyTypeEnum=("type", ["public", "secret"]),
        MeKeyDetailTypeEnum=("type", ["public", "secret"]),
        ModeEnum=("mode", ["on", "off"]),
        StateEnum=("state", ["on", "off"]),
        GranularityEnum=("granularity", ["day", "hour"]),
    )

    result = one_enum_per_value_set(document, None, None, True)

    schemas = result["components"]["schemas"]
    assert {n for n, s in schemas.items() if "enum" in s} == {
        "GranularityEnum",
        "KeyTypeEnum",
        "ModeEnum",
        "StateEnum",
    }
    ref = "#/components/schemas/KeyTypeEnum"
    assert schemas["OfMeKeyDetailTypeEnum"]["properties"]["type"] == {"$ref": ref}


def test_a_parameter_enum_is_not_typed_by_another_fields_component():
    document = enum_document(["off", "on"], ModeEnum=("mode", ["on", "off"]))

    with pytest.raises(ImproperlyConfigured, match="'granularity'"):
        one_enum_per_value_set(document, None, None, True)


def test_the_document_opens_with_how_to_make_a_first_request(document):
    """The docs page began with how times are written; how to send a key was only behind
    Authorize, so a newcomer with a new key had no first request to copy (a first-hour
    walkthrough)."""
    description = document["info"]["description"]
    first_request, _, rest = description.partition("Every time is ISO 8601")

    assert rest, "the time rules are still described"
    assert "Authorization" in first_request and "`Bearer <key>`" in first_request
    assert "curl https://sigsentry.example.com/v1/me" in first_request
    assert '-H "Authorization: Bearer ss_secret_' in first_request
    assert "X-Project-Id" in first_request and "POST /v1/analyses" in first_request


def test_schema_declares_both_bearer_credentials_and_the_session_cookie(document):
    schemes = document["components"]["securitySchemes"]

    assert schemes["apiKeyAuth"] == schemes["apiKeyAuth"] | {"type": "http", "scheme": "bearer"}
    assert schemes["jwtAuth"] == schemes["jwtAuth"] | {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }
    assert schemes["sessionCookie"] == schemes["sessionCookie"] | {
        "type": "apiKey",
        "in": "cookie",
        "name": "ss_access",
    }


def test_management_endpoints_accept_people_only_and_me_accepts_keys(document):
    for path, methods in MANAGEMENT_AND_AUTH_OPERATIONS.items():
        for method in methods:
            security = document["paths"][path][method].get("security")
            if path in CREDENTIAL_FREE:
                assert not security, (path, method)
            elif path == "/v1/me":
                assert {"apiKeyAuth": []} in security
            else:
                assert security == PEOPLE_ONLY, (path, method)


def test_every_error_response_is_the_error_body(document):
    error = document["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    for path, methods in MANAGEMENT_AND_AUTH_OPERATIONS.items():
        for method in methods:
            responses = document["paths"][path][method]["responses"]
            errors = {status: r for status, r in responses.items() if status.startswith(("4", "5"))}
            assert errors, (path, method)
            for response in errors.values():
                assert response["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/Error"
                }


def test_schema_generation_validates_without_warnings(tmp_path):
    call_command(
        "spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml")
    )

    assert (tmp_path / "schema.yaml").read_text().startswith("openapi: 3")


# Real responses match the document


def test_auth_responses_match_the_document(document, owner):
    client = APIClient()
    signup = client.post(
        "/v1/auth/signup",
        {
            "email": "doc@example.com",
            "password": "a-long-enough-passphrase",
            "organizationName": "D",
        },
        format="json",
    )
    login = client.post(
        "/v1/auth/login",
        {"email": "doc@example.com", "password": "a-long-enough-passphrase"},
        format="json",
    )
    refresh = client.post("/v1/auth/refresh", {"refresh": login.json()["refresh"]}, format="json")
    bad_login = client.post(
        "/v1/auth/login", {"email": "x@example.com", "password": "x"}, format="json"
    )
    invalid = client.post("/v1/auth/signup", {}, format="json")

    for response in (signup, login, refresh, bad_login, invalid):
        assert_matches(document, response)


def test_me_responses_match_the_document(document, owner, project):
    _key, plaintext = make_key(KeyKind.ORGANIZATION, project=project)

    assert_matches(document, user_client(owner).get("/v1/me"))
    assert_matches(document, bearer_client(plaintext).get("/v1/me"))
    assert_matches(document, APIClient().get("/v1/me"))


def test_organization_responses_match_the_document(document, owner, member, organization, project):
    client = user_client(owner)
    orgs = f"/v1/organizations/{organization.id}"

    responses = [
        client.get("/v1/organizations"),
        client.post("/v1/organizations", {"name": "Second"}, format="json"),
        client.get(f"{orgs}/projects"),
        client.post(f"{orgs}/projects", {"name": "Third"}, format="json"),
        client.get(f"{orgs}/members"),
        client.patch(f"{orgs}/members/{member.id}", {"role": "viewer"}, format="json"),
        client.patch(f"{orgs}/members/{owner.id}", {"role": "viewer"}, format="json"),
        client.patch(orgs, {"keyMaxLifetimeDays": 30}, format="json"),
        client.patch(orgs, {"keyMaxLifetimeDays": 0}, format="json"),
        client.patch(orgs, {"keyMaxLifetimeDays": None}, format="json"),
    ]

    assert [r.status_code for r in responses] == [200, 201, 200, 201, 200, 200, 409, 200, 400, 200]
    for response in responses:
        assert_matches(document, response)


@pytest.mark.parametrize("kind", list(KeyKind), ids=lambda kind: kind.name.lower())
def test_key_responses_match_the_document(document, owner, project, kind):
    client = user_client(owner)
    body = {"name": "Doc"} | ({} if kind is KeyKind.PUBLIC else {"permissions": ["analysis:read"]})
    minted = client.post(collection_url(kind, project), body, format="json")
    key_id = minted.json()["id"]

    responses = [
        minted,
        client.get(collection_url(kind, project)),
        client.get(key_url(kind, project, key_id)),
        client.post(key_url(kind, project, key_id, "roll"), {"graceSeconds": 10}, format="json"),
        client.post(key_url(kind, project, key_id, "revoke")),
        client.post(key_url(kind, project, key_id, "roll"), {"graceSeconds": 10}, format="json"),
    ]

    assert [r.status_code for r in responses] == [201, 200, 200, 201, 200, 400]
    for response in responses:
        assert_matches(document, response)


@pytest.mark.parametrize("kind", list(KeyKind), ids=lambda kind: kind.name.lower())
def test_guardrail_responses_match_the_document(document, owner, project, kind):
    client = user_client(owner)
    guardrails = {"rateLimit": {"requests": 5, "perSeconds": 60}}
    if kind is not KeyKind.PUBLIC:
        guardrails |= {"permissions": ["analysis:read"], "allowedIps": ["203.0.113.0/24"]}
    if kind is KeyKind.ORGANIZATION:
        guardrails["projectIds"] = [str(project.id)]
    minted = client.post(collection_url(kind, project), {"name": "Doc"} | guardrails, format="json")
    url = key_url(kind, project, minted.json()["id"])

    responses = [
        minted,
        client.patch(url, {"name": "Renamed", "rateLimit": None}, format="json"),
        client.patch(url, {"permissions": ["analysis:read"]}, format="json"),
        bearer_client(minted.json()["key"]).patch(url, {"rateLimit": None}, format="json"),
    ]

    assert [r.status_code for r in responses] == [201, 200, 400, 403]
    for response in responses:
        assert_matches(document, response)


def test_audit_and_leak_report_responses_match_the_document(document, owner, organization, project):
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)
    record_event(action=Action.KEY_REVOKED, organization_id=organization.id, actor_key=api_key)
    leak = APIClient().post("/v1/leaked-keys", {"keys": [plaintext]}, format="json")
    account_services.start_session(owner)

    events = user_client(owner).get(f"/v1/organizations/{organization.id}/audit-events")

    assert len(events.json()["results"]) == 3
    assert_matches(document, leak)
    assert_matches(document, events)


# The page


def test_docs_page_loads_every_asset_from_this_server(client):
    response = client.get("/v1/docs")

    assert response.status_code == 200
    html = response.content.decode()
    assets = re.findall(r'<(?:link|script|img)\b[^>]*\b(?:src|href)="([^"]+)"', html)
    assert assets
    assert not [asset for asset in assets if not asset.startswith("/")]
    assert "//" not in "".join(assets)
    for asset in assets:
        served = client.get(asset)
        served.close()  # a streamed file, closed rather than left to the collector
        assert served.status_code == 200, asset
    policy = response["Content-Security-Policy"]
    assert "script-src 'self';" in policy


def test_docs_page_leads_back_to_the_dashboard_without_inline_code(client):
    """The API reference is opened from the dashboard's sidebar and had no way back."""
    response = client.get("/v1/docs")

    page = response.content.decode()
    assert '<a href="/">← Back to the dashboard</a>' in page
    assert_no_inline_code(page)  # the dashboard's CSP: no inline script or style
    assert "script-src 'self';" in response["Content-Security-Policy"]


def test_docs_page_script_loads_our_schema(client):
    script = client.get("/v1/docs", {"script": ""})

    assert script.status_code == 200
    assert "/v1/schema" in script.content.decode()


# Public: no credential is read, and every error is the SPEC §3 body


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"] | {"message": ""} == {
        "code": code,
        "message": "",
        "details": {},
    }


@pytest.mark.parametrize(
    ("method", "url", "status", "code"),
    [
        ("post", "/v1/schema", 405, "METHOD_NOT_ALLOWED"),
        ("delete", "/v1/schema?format=json", 405, "METHOD_NOT_ALLOWED"),
        ("get", "/v1/schema?format=bogus", 404, "NOT_FOUND"),
        ("post", "/v1/docs", 405, "METHOD_NOT_ALLOWED"),
        ("put", "/v1/docs?script", 405, "METHOD_NOT_ALLOWED"),
    ],
    ids=["post-schema", "delete-schema", "unknown-format", "post-docs", "put-docs-script"],
)
def test_schema_and_docs_errors_are_the_error_body(method, url, status, code):
    response = getattr(APIClient(), method)(url)

    assert_error(response, status, code)
    assert response["Cache-Control"] == "no-store"
    assert response["Content-Security-Policy"]


@pytest.mark.parametrize(
    ("url", "accept", "content_type"),
    [
        ("/v1/schema", "text/html", "application/vnd.oai.openapi+json"),
        ("/v1/schema", "application/xml", "application/vnd.oai.openapi+json"),
        ("/v1/docs", "application/json", "text/html"),
        ("/v1/docs?script", "application/json", "application/javascript"),
    ],
)
def test_an_accept_no_renderer_matches_gets_the_document_not_an_error(
    url, accept, content_type, caplog
):
    """No 406 in SPEC §3, and no 500 either (it was one, with a traceback in the log, for
    anyone to trigger): the first renderer answers."""
    response = APIClient().get(url, HTTP_ACCEPT=accept)

    assert response.status_code == 200
    assert response["Content-Type"].startswith(content_type)
    assert "unhandled error" not in caplog.text


@pytest.mark.parametrize("credential", ["junk", "ss_secret_notAKey", "a.b.c"])
def test_a_bad_bearer_credential_still_gets_the_schema_and_the_docs(credential):
    client = bearer_client(credential)

    schema = client.get("/v1/schema")
    as_yaml = client.get("/v1/schema", {"format": "yaml"})
    page = client.get("/v1/docs")
    script = client.get("/v1/docs", {"script": ""})

    assert schema.status_code == 200
    assert schema.json()["openapi"].startswith("3.")
    assert as_yaml.status_code == 200
    assert as_yaml.content.startswith(b"openapi: 3")
    assert (page.status_code, page["Content-Type"]) == (200, "text/html; charset=utf-8")
    assert b"swagger-ui" in page.content
    assert (script.status_code, script["Content-Type"]) == (200, "application/javascript")


def test_an_ended_dashboard_session_still_gets_the_docs_page(owner):
    client = cookie_client(owner)
    account_services.end_user_sessions(owner, "logout")
    assert client.get("/v1/me").status_code == 401  # the cookie is refused elsewhere

    page = client.get("/v1/docs")
    script = client.get("/v1/docs", {"script": ""})
    schema = client.get("/v1/schema")

    assert (page.status_code, page["Content-Type"]) == (200, "text/html; charset=utf-8")
    assert "script-src 'self';" in page["Content-Security-Policy"]
    assert script.status_code == 200
    assert "/v1/schema" in script.content.decode()
    assert schema.status_code == 200
    assert schema["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"


def test_path_variables_are_named_as_spec_md_writes_them(document):
    """`/v1/projects/{projectId}/sdk-keys`, `.../webhooks/{id}`: the names clients and their
    generated code look up (SPEC.md: everything named there must match exactly)."""
    variables = {
        name for template in document["paths"] for name in re.findall(r"{(\w+)}", template)
    }
    parameters = {
        parameter["name"]
        for item in document["paths"].values()
        for operation in item.values()
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "path"
    }

    assert variables == parameters == {"orgId", "projectId", "keyId", "userId", "id", "token"}
    for template in (
        "/v1/organizations/{orgId}/members/{userId}",
        "/v1/organizations/{orgId}/webhooks/{id}/deliveries",
        "/v1/auth/sessions/{id}/end",
        "/v1/config/log-sources/{id}",
        "/v1/analyses/{id}/follow-ups",
        "/v1/invitations/{token}/accept",
    ):
        assert template in document["paths"], template


@pytest.mark.parametrize(
    ("path", "method", "status", "named", "not_named"),
    [
        ("/v1/auth/login", "post", "401", "INVALID_CREDENTIALS", "KEY_REVOKED"),
        ("/v1/auth/login/2fa", "post", "401", "INVALID_CREDENTIALS", "SIGNATURE_INVALID"),
        ("/v1/auth/refresh", "post", "401", "TOKEN_EXPIRED", "KEY_INVALID"),
        ("/v1/auth/2fa/disable", "post", "401", "INVALID_CREDENTIALS", "SIGNATURE_INVALID"),
        ("/v1/me", "get", "401", "KEY_REVOKED", "INVALID_CREDENTIALS"),
        ("/v1/me", "get", "401", "TOKEN_EXPIRED", "SIGNATURE_INVALID"),
        ("/v1/leaked-keys", "post", "429", "RATE_LIMITED", "rateLimit"),
    ],
)
def test_each_operation_names_the_codes_it_can_answer(
    document, path, method, status, named, not_named
):
    """An integration audit: every operation's 401 listed every code (the login's the key
    codes, /v1/me's SIGNATURE_INVALID), so a client could not tell which it may meet."""
    description = document["paths"][path][method]["responses"][status]["description"]
    assert named in description and not_named not in description, description
