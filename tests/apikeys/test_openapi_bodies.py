"""The key collections' request bodies in the OpenAPI document agree with the API.

Each collection documents its own bodies (an SDK key takes origins and the locked
permissions, a secret key IP lists, an organization key also projects). For each body
below, the document's verdict and the API's are the same: what the document accepts the
API accepts, and what the API refuses for a reason a schema can state (a field of
another kind of key, an unknown field in a PATCH, an origin that is not https) the
document refuses too. The patterns the document gives for origins and networks admit
every value the API stores.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from apps.apikeys.guardrails import ORIGIN_PATTERN, validate_allowed_ips, validate_allowed_origins
from apps.apikeys.keyformat import KeyKind
from tests.apikeys.openapi_helpers import request_body_validator
from tests.factories import make_key
from tests.orgs.helpers import collection_url, key_url, user_client

pytestmark = pytest.mark.django_db

SDK, SECRET, ORG = KeyKind.PUBLIC, KeyKind.SECRET, KeyKind.ORGANIZATION
COLLECTION = {
    SDK: "/v1/projects/{projectId}/sdk-keys",
    SECRET: "/v1/projects/{projectId}/api-keys",
    ORG: "/v1/organizations/{orgId}/api-keys",
}
LOCKED = ["analysis:read", "analysis:create"]
LIMIT = {"requests": 5, "perSeconds": 60}
LATER = "2999-01-31T12:00:00Z"
PROJECT = "<the project's id>"  # replaced by the test's project id

# (kind, body, accepted): minted with POST <collection>.
MINT = [
    (SDK, {"name": "Web"}, True),
    (
        SDK,
        {
            "name": "Web",
            "permissions": LOCKED,
            "expiresAt": LATER,
            "allowedOrigins": ["https://app.example.com:8443", "https://example.org"],
            "rateLimit": LIMIT,
            "allowedIps": [],
            "projectIds": None,
        },
        True,
    ),
    (SDK, {"name": "Web", "permissions": ["analysis:read"]}, False),
    (SDK, {"name": "Web", "permissions": ["analysis:read", "analysis:read"]}, False),
    (SDK, {"name": "Web", "allowedOrigins": ["http://app.example.com"]}, False),
    (SDK, {"name": "Web", "allowedIps": ["203.0.113.7"]}, False),
    (SDK, {"name": "Web", "projectIds": [PROJECT]}, False),
    (SDK, {"name": "Web", "rateLimit": LIMIT | {"burst": 2}}, False),
    (SDK, {"name": "Web", "rateLimit": {"requests": 0, "perSeconds": 60}}, False),
    (SDK, {"name": "   "}, False),
    (SDK, {}, False),
    (SECRET, {"name": "CI", "permissions": ["config:read"]}, True),
    (
        SECRET,
        {
            "name": "CI",
            "permissions": ["config:read", "analysis:read"],
            "expiresAt": None,
            "rateLimit": None,
            "allowedIps": ["203.0.113.7", "10.0.0.0/8", "2001:db8::/32", "::1"],
            "allowedOrigins": [],
            "projectIds": [],
        },
        True,
    ),
    (SECRET, {"name": "CI"}, False),
    (SECRET, {"name": "CI", "permissions": []}, False),
    (SECRET, {"name": "CI", "permissions": ["config:delete"]}, False),
    (
        SECRET,
        {"name": "CI", "permissions": ["config:read"], "allowedIps": ["203.0.113.300"]},
        False,
    ),
    (SECRET, {"name": "CI", "permissions": ["config:read"], "allowedIps": ["10.0.0.0/33"]}, False),
    (
        SECRET,
        {"name": "CI", "permissions": ["config:read"], "allowedOrigins": ["https://a.example"]},
        False,
    ),
    (SECRET, {"name": "CI", "permissions": ["config:read"], "projectIds": [PROJECT]}, False),
    (ORG, {"name": "Ops", "permissions": ["config:read"], "projectIds": [PROJECT]}, True),
    (ORG, {"name": "Ops", "permissions": ["config:read"], "allowedIps": ["::/0"]}, True),
    (ORG, {"name": "Ops", "permissions": ["config:read"], "projectIds": ["not-a-uuid"]}, False),
    (
        ORG,
        {"name": "Ops", "permissions": ["config:read"], "allowedOrigins": ["https://a.example"]},
        False,
    ),
]

# (kind, body, accepted): PATCH <collection>/{keyId} of an active key.
UPDATE = [
    (SDK, {"name": "Renamed"}, True),
    (SDK, {"allowedOrigins": ["https://a.example"], "allowedIps": [], "rateLimit": None}, True),
    (SDK, {}, False),
    (SDK, {"permissions": LOCKED}, False),
    (SDK, {"colour": "red"}, False),
    (SDK, {"allowedIps": ["203.0.113.7"]}, False),
    (SDK, {"rateLimit": {"requests": 5}}, False),
    (SECRET, {"allowedIps": ["203.0.113.0/24"], "rateLimit": LIMIT}, True),
    (SECRET, {"allowedOrigins": [], "projectIds": []}, True),
    (SECRET, {"projectIds": [PROJECT]}, False),
    (SECRET, {"allowedOrigins": ["https://a.example"]}, False),
    (SECRET, {"name": ""}, False),
    (ORG, {"projectIds": [PROJECT], "allowedIps": ["2001:db8::1"]}, True),
    (ORG, {"expiresAt": LATER}, False),
]

# (kind, body, accepted): POST <collection>/{keyId}/roll of an active key.
ROLL = [
    (SDK, {"graceSeconds": 0}, True),
    (
        SDK,
        {"graceSeconds": 60, "permissions": LOCKED, "allowedOrigins": ["https://a.example"]},
        True,
    ),
    (SDK, {}, False),
    (SDK, {"graceSeconds": 604801}, False),
    (SDK, {"graceSeconds": 0, "permissions": ["config:read"]}, False),
    (SECRET, {"graceSeconds": 0, "permissions": ["config:write"], "expiresAt": LATER}, True),
    (SECRET, {"graceSeconds": 0, "permissions": []}, False),
    (SECRET, {"graceSeconds": 0, "allowedOrigins": ["https://a.example"]}, False),
    (ORG, {"graceSeconds": 3600}, True),
    (ORG, {"graceSeconds": -1}, False),
]


@pytest.fixture(scope="module")
def document(django_db_blocker) -> dict:
    with django_db_blocker.unblock():
        return APIClient().get("/v1/schema", {"format": "json"}).json()


def with_project(body: dict, project) -> dict:
    return json.loads(json.dumps(body).replace(PROJECT, str(project.id)))


def verdicts(document, template: str, method: str, body: dict, response, success: int):
    errors = [
        e.message for e in request_body_validator(document, template, method).iter_errors(body)
    ]
    return (not errors, response.status_code == success), (errors, response.json())


def case_id(case) -> str:
    kind, body, accepted = case
    return f"{kind.name.lower()}-{'ok' if accepted else 'refused'}-{'-'.join(body) or 'empty'}"


@pytest.mark.parametrize("case", MINT, ids=case_id)
def test_the_document_and_the_api_agree_on_mint_bodies(document, owner, project, case):
    kind, body, accepted = case
    body = with_project(body, project)

    response = user_client(owner).post(collection_url(kind, project), body, format="json")

    verdict, why = verdicts(document, COLLECTION[kind], "post", body, response, 201)
    assert verdict == (accepted, accepted), why


@pytest.mark.parametrize("case", UPDATE, ids=case_id)
def test_the_document_and_the_api_agree_on_patch_bodies(document, owner, project, case):
    kind, body, accepted = case
    body = with_project(body, project)
    api_key, _ = make_key(kind, project=project)

    response = user_client(owner).patch(key_url(kind, project, api_key), body, format="json")

    template = COLLECTION[kind] + "/{keyId}"
    verdict, why = verdicts(document, template, "patch", body, response, 200)
    assert verdict == (accepted, accepted), why


@pytest.mark.parametrize("case", ROLL, ids=case_id)
def test_the_document_and_the_api_agree_on_roll_bodies(document, owner, project, case):
    kind, body, accepted = case
    api_key, _ = make_key(kind, project=project)

    response = user_client(owner).post(key_url(kind, project, api_key, "roll"), body, format="json")

    template = COLLECTION[kind] + "/{keyId}/roll"
    verdict, why = verdicts(document, template, "post", body, response, 201)
    assert verdict == (accepted, accepted), why


# The patterns admit what the API stores


@settings(max_examples=200)
@given(st.from_regex(ORIGIN_PATTERN, fullmatch=True))
def test_every_origin_the_document_allows_the_api_stores(origin):
    assert validate_allowed_origins(SDK, [origin]) == [origin.removesuffix(":443")]


@pytest.fixture(scope="module")
def document_allows_ips(document):
    """Whether the document's secret-key mint body allows these `allowedIps`."""
    body = request_body_validator(document, COLLECTION[SECRET], "post")
    minimal = {"name": "CI", "permissions": ["config:read"]}
    return lambda ips: body.is_valid(minimal | {"allowedIps": ips})


networks = st.one_of(
    st.ip_addresses().map(str),
    st.tuples(st.ip_addresses(v=4), st.integers(0, 32)).map(lambda n: f"{n[0]}/{n[1]}"),
    st.tuples(st.ip_addresses(v=6), st.integers(0, 128)).map(lambda n: f"{n[0]}/{n[1]}"),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(networks)
def test_every_network_the_api_stores_the_document_allows(document_allows_ips, network):
    assert validate_allowed_ips(SECRET, [network])  # stored: no VALIDATION_ERROR
    assert document_allows_ips([network])
