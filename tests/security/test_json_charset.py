"""JSON bodies are read as UTF-8 only (RFC 8259 §8.1).

Found by a Unicode audit: the parser decoded by whatever charset the Content-Type named,
so a UTF-7 body (`+ADw-script+AD4-` is `<script>`) or an EBCDIC one got past anything that
reads the bytes, and was stored. A charset other than UTF-8 is a 400 that changes nothing.
"""

from __future__ import annotations

import json

import pytest

from apps.accounts.models import User
from tests.orgs.helpers import error_code

pytestmark = pytest.mark.django_db

SIGNUP = "/v1/auth/signup"
BODY = {"email": "new@example.com", "password": "a-long-enough-passphrase", "organizationName": "N"}


def post(api_client, charset: str | None, codec: str):
    content_type = "application/json" + (f"; charset={charset}" if charset else "")
    raw = json.dumps(BODY).encode(codec)
    return api_client.generic("POST", SIGNUP, raw, content_type=content_type)


@pytest.mark.parametrize("charset", ["utf-7", "cp037", "utf-16", "utf-32", "latin-1"])
def test_a_body_in_another_charset_is_refused_and_changes_nothing(api_client, charset):
    response = post(api_client, charset, charset)

    assert response.status_code == 400 and error_code(response) == "VALIDATION_ERROR"
    assert "UTF-8" in response.json()["error"]["details"]["fields"]["body"][0]
    assert not User.objects.filter(email="new@example.com").exists()


@pytest.mark.parametrize("charset", [None, "utf-8", "UTF-8", "utf8"])
def test_utf_8_is_read_named_or_not(api_client, charset):
    assert post(api_client, charset, "utf-8").status_code == 201
