"""JSON nested deeper than any body of the API is a 400, on every JSON endpoint.

Found by an HTTP audit: the decoder takes ~950 levels, but the walk that looks for NUL
characters recursed two frames a level, so a field nested 300-900 deep was a 500 (and a
100 KB traceback) on login, signup and every other JSON endpoint, without a credential.
"""

from __future__ import annotations

import json

import pytest

from apps.accounts.models import User
from core.api import MAX_JSON_DEPTH
from tests.orgs.helpers import error_code

pytestmark = pytest.mark.django_db

SIGNUP = "/v1/auth/signup"


def nested(levels: int, inner: object = 0) -> str:
    """`levels` arrays and objects inside one another, alternating."""
    text = json.dumps(inner)
    for level in range(levels):
        text = f"[{text}]" if level % 2 else f'{{"a": {text}}}'
    return text


def signup(api_client, extra: str):
    body = (
        '{"email": "new@example.com", "password": "a-long-enough-passphrase", '
        f'"organizationName": "N", "extra": {extra}}}'
    )
    return api_client.generic("POST", SIGNUP, body.encode(), content_type="application/json")


@pytest.mark.parametrize("levels", [MAX_JSON_DEPTH, 300, 500, 900, 5000])
def test_a_field_nested_too_deeply_is_refused_and_changes_nothing(api_client, levels):
    response = signup(api_client, nested(levels))

    assert response.status_code == 400 and error_code(response) == "VALIDATION_ERROR"
    assert response.json()["error"]["details"]["fields"] == {
        "body": ["The JSON is nested too deeply."]
    }
    assert not User.objects.filter(email="new@example.com").exists()


def test_a_top_level_array_nested_too_deeply_is_refused(api_client):
    response = api_client.generic(
        "POST", "/v1/auth/login", nested(600).encode(), content_type="application/json"
    )

    assert response.status_code == 400 and error_code(response) == "VALIDATION_ERROR"


def test_nesting_within_the_bound_is_read(api_client):
    response = signup(api_client, nested(MAX_JSON_DEPTH - 1))

    # Read: refused for what it says (`extra` is no field of signup), not for its depth.
    assert response.json()["error"]["details"]["fields"] == {"extra": ["Unknown field."]}


def test_a_null_character_deep_inside_is_still_named_by_its_field(api_client):
    response = signup(api_client, nested(MAX_JSON_DEPTH - 1, inner="a\x00b"))

    assert response.status_code == 400
    assert response.json()["error"]["details"]["fields"] == {
        "extra": ["Null characters and unpaired surrogates are not allowed."]
    }
