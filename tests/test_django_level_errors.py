"""An error that Django answers under `/v1` (no route, a trailing slash) is the same bytes
and headers as one a DRF view answers.

An API audit found `/v1/nope` and `/v1/analyses/` answered `JsonResponse`'s spaced JSON
(`{"error": {"code": ...`) while every view answers DRF's compact JSON: one error body,
two serializations, depending on which layer refused.
"""

from __future__ import annotations

import uuid

import pytest
from rest_framework.test import APIClient

from apps.apikeys.keyformat import KeyKind
from tests.factories import make_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def drf_not_found(project):
    """A 404 NOT_FOUND answered by a DRF view: an analysis that does not exist."""
    key = make_key(KeyKind.SECRET, project=project)[1]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}", HTTP_X_PROJECT_ID=str(project.id))
    response = client.get(f"/v1/analyses/{uuid.uuid4()}")
    assert response.status_code == 404
    return response


@pytest.mark.parametrize(
    "path", ["/v1/nope", "/v1/nope/", "/v1/analyses/", "/v1/organizations/", "/v1/me/x"]
)
def test_a_django_404_under_v1_is_byte_for_byte_a_drf_404(drf_not_found, path):
    response = APIClient().get(path)

    assert response.status_code == 404
    assert (
        response.content
        == drf_not_found.content
        == (b'{"error":{"code":"NOT_FOUND","message":"Not found.","details":{}}}')
    )
    assert response["Content-Type"] == drf_not_found["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    assert response["X-Request-Id"].startswith("req_")
