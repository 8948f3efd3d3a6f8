"""Queries per request: the authentication path's budget and the endpoints' own."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.analyses.helpers import send
from tests.apikeys.auth_helpers import Credential

pytestmark = pytest.mark.django_db


def _queries(client, cred: Credential, path: str) -> list[str]:
    send(client, "GET", path, credential=cred.token, project_id=cred.project_header)  # warm-up
    with CaptureQueriesContext(connection) as ctx:
        response = send(client, "GET", path, credential=cred.token, project_id=cred.project_header)
    assert response.status_code == 200
    return [q["sql"] for q in ctx.captured_queries]


def _resource_queries(queries: list[str]) -> list[str]:
    tables = ("analyses_", "projects_logsource", "projects_channel")
    return [q for q in queries if any(t in q.split(" WHERE ")[0] for t in tables)]


@pytest.mark.parametrize("who", ["pub", "secret"])
def test_project_key_costs_one_query_on_me(api_client, credential, who):
    assert len(_queries(api_client, credential(who), "/v1/me")) == 1


def test_org_key_costs_at_most_two_queries_with_a_project_id(api_client, credential, world):
    cred = credential("org")
    assert len(_queries(api_client, cred, "/v1/me")) <= 2
    config = _queries(api_client, cred, "/v1/config")
    assert len(config) - len(_resource_queries(config)) == 2  # key, then project
    assert len(_resource_queries(config)) == 2  # log sources, channels


@pytest.mark.parametrize(
    ("who", "path", "expected"),
    [
        ("secret", "/v1/config", 3),
        ("secret", "/v1/analyses", 4),
        ("secret", "/v1/analyses/{analysis}", 4),
        ("org", "/v1/analyses", 5),
        ("member", "/v1/config", 4),
        ("member", "/v1/analyses", 5),
    ],
)
def test_resource_endpoints_stay_within_their_query_budget(
    api_client, credential, world, who, path, expected
):
    """Authentication + project (1 for project keys, 2 for org keys and users) + the resource."""
    assert len(_queries(api_client, credential(who), path.format(**world))) == expected
