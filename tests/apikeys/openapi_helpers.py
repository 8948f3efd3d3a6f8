"""Reading the OpenAPI document (/v1/schema) as JSON Schema, for the tests that hold the
API's requests and responses to it."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator


def json_schema(node: Any) -> Any:
    """OpenAPI 3.0.3 schema → JSON Schema: `nullable: true` adds null to the `type` beside it,
    and does nothing where there is none ("only if type is explicitly defined within the
    same Schema Object"), as strict validators read it (openapi-core's). Read leniently,
    an `allOf: [ref]` beside `nullable` hid that every key without a rate limit broke the
    document for them (an integration audit)."""
    if isinstance(node, list):
        return [json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {k: json_schema(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable") and "type" in converted:
        converted["type"] = [converted["type"], "null"]
    return converted


def validator(document: dict, schema: dict) -> Draft202012Validator:
    """A validator of `schema`, with the document's components to resolve its `$ref`s and
    its formats (`ipv4`, `uuid`, `date-time`...) checked, as a client's validator would."""
    root = {"$defs": {}, "components": json_schema(document["components"])}
    return Draft202012Validator(
        root | json_schema(schema), format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def request_body_validator(document: dict, template: str, method: str) -> Draft202012Validator:
    operation = document["paths"][template][method]
    return validator(document, operation["requestBody"]["content"]["application/json"]["schema"])
