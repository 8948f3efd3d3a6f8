"""What the tests of the /v1 authentication path share (the `test_auth_*` modules).

The endpoints under test, written out from SPEC §4; a credential with its
X-Project-Id; one request; the error-body check; a one-character mutation.
The fixtures that build on these are in `tests/apikeys/conftest.py`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from apps.analyses.models import Analysis, Feedback, FollowUp
from apps.apikeys import keyformat
from apps.projects.models import Channel, LogSource
from tests.analyses.helpers import send

READ, CREATE = "analysis:read", "analysis:create"
CONFIG_READ, CONFIG_WRITE = "config:read", "config:write"

#: RFC 6750 §3 challenges: no credential; a credential refused; a header not `Bearer <token>`.
WWW_AUTHENTICATE = 'Bearer realm="sigsentry"'
WWW_AUTHENTICATE_INVALID = 'Bearer realm="sigsentry", error="invalid_token"'
WWW_AUTHENTICATE_MALFORMED = 'Bearer realm="sigsentry", error="invalid_request"'


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: str  # may name {analysis}, {log_source} or {channel} of the `world` fixture
    permission: str
    body: dict | None
    success: int


ENDPOINTS = [
    Endpoint("analyses-list", "GET", "/v1/analyses", READ, None, 200),
    Endpoint("analyses-create", "POST", "/v1/analyses", CREATE, {"title": "t", "input": "i"}, 201),
    Endpoint("analysis-detail", "GET", "/v1/analyses/{analysis}", READ, None, 200),
    Endpoint(
        "follow-up", "POST", "/v1/analyses/{analysis}/follow-ups", CREATE, {"question": "q"}, 201
    ),
    Endpoint("feedback", "POST", "/v1/analyses/{analysis}/feedback", CREATE, {"rating": "up"}, 201),
    Endpoint("config-read", "GET", "/v1/config", CONFIG_READ, None, 200),
    Endpoint(
        "log-source-create",
        "POST",
        "/v1/config/log-sources",
        CONFIG_WRITE,
        {"name": "n", "kind": "http"},
        201,
    ),
    Endpoint(
        "log-source-update",
        "PATCH",
        "/v1/config/log-sources/{log_source}",
        CONFIG_WRITE,
        {"name": "renamed"},
        200,
    ),
    Endpoint(
        "channel-create",
        "POST",
        "/v1/config/channels",
        CONFIG_WRITE,
        {"name": "n", "kind": "slack", "target": "#n"},
        201,
    ),
    Endpoint("channel-delete", "DELETE", "/v1/config/channels/{channel}", CONFIG_WRITE, None, 204),
]
READ_ENDPOINTS = [e for e in ENDPOINTS if e.method == "GET"]
ENDPOINT = {e.name: e for e in ENDPOINTS}
_ips = (f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}" for n in itertools.count(1))


def fresh_ip() -> dict[str, str]:
    """A new client address, so many deliberate failures in one test stay under the
    failed-authentication throttle (which is per client IP)."""
    return {"REMOTE_ADDR": next(_ips)}


@dataclass(frozen=True)
class Credential:
    token: str
    project_header: str | None


def call(client, endpoint: Endpoint, cred: Credential | None, world, **extra):
    return send(
        client,
        endpoint.method,
        endpoint.path.format(**world),
        credential=cred.token if cred else None,
        project_id=cred.project_header if cred else None,
        body=endpoint.body,
        **extra,
    )


def snapshot() -> tuple:
    """Everything the endpoints could write, to prove a refused request wrote nothing."""
    return (
        Analysis.objects.count(),
        FollowUp.objects.count(),
        Feedback.objects.count(),
        sorted(LogSource.objects.values_list("name", flat=True)),
        sorted(Channel.objects.values_list("name", flat=True)),
    )


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if status == 401:
        challenges = {
            "AUTHENTICATION_REQUIRED": WWW_AUTHENTICATE,
            "AUTHORIZATION_MALFORMED": WWW_AUTHENTICATE_MALFORMED,
        }
        assert response["WWW-Authenticate"] == challenges.get(code, WWW_AUTHENTICATE_INVALID)
    else:
        assert "WWW-Authenticate" not in response
    return body["error"]


def mutate(text: str, position: int) -> str:
    """`text` with the character at `position` (negative counts from the end) replaced by
    another one; the length stays the same."""
    position %= len(text)
    alphabet = keyformat.BASE62_ALPHABET
    old = text[position]
    new = alphabet[(alphabet.index(old) + 1) % len(alphabet)] if old in alphabet else "x"
    return text[:position] + new + text[position + 1 :]
