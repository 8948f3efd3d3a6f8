"""A body that is not JSON is a 400 VALIDATION_ERROR that says what to send.

An API audit found `POST /v1/analyses` sent as `text/plain`, a form, or with no JSON
content type answered "The request body must be a JSON object." (the real reason only in
`details.fields.body`), and malformed JSON answered Python's decoder text verbatim. SPEC §3
has no 415: the status stays 400, the message says to send `application/json`, and a
malformed body gets where the decoder stopped, in our words.
"""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from apps.analyses.models import Analysis
from apps.apikeys.keyformat import KeyKind
from tests.factories import make_key

pytestmark = pytest.mark.django_db

BODY = b'{"title": "t", "input": "i"}'


@pytest.fixture
def client(project) -> APIClient:
    key = make_key(KeyKind.SECRET, project=project)[1]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}", HTTP_X_PROJECT_ID=str(project.id))
    return client


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/octet-stream", ""],
)
def test_a_body_not_sent_as_json_is_told_to_be(client, content_type):
    response = client.generic("POST", "/v1/analyses", BODY, content_type=content_type)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["message"] == (
        "The request body must be sent as application/json (Content-Type: application/json)."
    )
    assert error["details"]["fields"]["body"][0].startswith("Unsupported media type")
    assert not Analysis.objects.exists()


@pytest.mark.parametrize(
    ("body", "where"),
    [(b'{"title": "t",, }', "line 1, column 15"), (b'{\n  "title": "t"\n  "input"}', "line 3")],
)
def test_malformed_json_says_where_in_our_words(client, body, where):
    response = client.generic("POST", "/v1/analyses", body, content_type="application/json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["message"].startswith("The request body is not valid JSON (")
    assert where in error["message"]
    assert error["details"]["fields"]["body"] == [error["message"]]
    for decoders_words in ("Expecting", "char ", "JSON parse error", "delimiter"):
        assert decoders_words not in response.content.decode()


def test_a_body_that_is_not_utf_8_says_so(client):
    response = client.generic(
        "POST", "/v1/analyses", b'{"title": "\xff"}', content_type="application/json"
    )

    assert response.status_code == 400
    assert response.json()["error"]["message"] == "The request body is not valid UTF-8."
    assert "codec" not in response.content.decode()
