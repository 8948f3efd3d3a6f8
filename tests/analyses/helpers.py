"""Request helpers shared by the tests of the project-scoped API (analyses, config, auth)."""

from __future__ import annotations

from typing import Any


def send(client, method, path, *, credential=None, project_id=None, body=None, **extra):
    """One /v1 request with an optional bearer credential, X-Project-Id and JSON body."""
    headers = dict(extra)
    if credential is not None:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {credential}"
    if project_id is not None:
        headers["HTTP_X_PROJECT_ID"] = str(project_id)
    call = getattr(client, method.lower())
    if body is None:
        return call(path, **headers)
    return call(path, body, format="json", **headers)


def error_code(response) -> str:
    return response.json()["error"]["code"]


def validation_fields(response) -> dict[str, Any]:
    """`details.fields` of a VALIDATION_ERROR response (fails on any other response)."""
    assert error_code(response) == "VALIDATION_ERROR", response.json()
    return response.json()["error"]["details"]["fields"]
