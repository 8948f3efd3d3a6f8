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


def undeclared(document: dict, schema: dict, instance: Any, path: str = "$") -> list[str]:
    """The members of `instance` (an answer's body) that `schema` does not declare: what a
    generated client (openapi-python-client) drops into `additional_properties`, untyped,
    while validation passes them (the document leaves answers open). A free-form object
    (`additionalProperties` given: `details`, `settings`) declares any member."""
    schema = _resolved(document, schema)
    if isinstance(instance, list):
        items = schema.get("items", {})
        return [
            m
            for i, v in enumerate(instance)
            for m in undeclared(document, items, v, f"{path}[{i}]")
        ]
    if not isinstance(instance, dict):
        return []
    branches = [_resolved(document, b) for b in schema.get("oneOf", schema.get("anyOf", ()))]
    branches = [b for b in branches if b.get("enum") != [None]]
    if branches:  # the branch the answer is (a discriminator's, or the one it fits best)
        found = [undeclared(document, b, instance, path) for b in branches]
        return min(found, key=len)
    if "additionalProperties" in schema and schema["additionalProperties"] is not False:
        return []
    properties: dict[str, Any] = {}
    for part in [schema, *(_resolved(document, s) for s in schema.get("allOf", ()))]:
        properties |= part.get("properties", {})
    if not properties and "allOf" not in schema and schema.get("type") != "object":
        return []
    missing = [f"{path}.{name}" for name in instance if name not in properties]
    return missing + [
        m
        for name, value in instance.items()
        if name in properties
        for m in undeclared(document, properties[name], value, f"{path}.{name}")
    ]


def _resolved(document: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rpartition("/")[2]]
    if len(schema.get("allOf", ())) == 1 and "properties" not in schema:
        return _resolved(document, schema["allOf"][0])
    return schema
