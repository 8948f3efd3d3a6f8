"""An id in a `/v1` path is read only as the answers write it (8-4-4-4-12 hex digits): one
resource, one URL. `uuid.UUID` alone also reads `urn:uuid:…`, braces, no dashes and `_`
between digits, so each resource had many URLs, and a proxy's or WAF's path rule
(`^/v1/projects/[0-9a-f-]{36}/api-keys`) could be dodged."""

from __future__ import annotations

import pytest

from apps.analyses.models import Analysis
from apps.apikeys.keyformat import KeyKind
from tests.factories import make_key, make_webhook
from tests.orgs.helpers import error_code, user_client

pytestmark = pytest.mark.django_db

SPELLINGS = {
    "urn": lambda canonical: f"urn:uuid:{canonical}",
    "braces": lambda canonical: f"%7B{canonical}%7D",
    "no-dashes": lambda canonical: canonical.replace("-", ""),
    "underscores": lambda canonical: canonical.replace("-", "_"),
}


@pytest.fixture
def paths(owner, organization, project):
    """Paths with one id each in its place, as `{}`, and that id."""
    api_key, _ = make_key(KeyKind.SECRET, project=project)
    analysis = Analysis.objects.create(
        project=project, title="t", input="i", created_by_type="user", created_by_label="x"
    )
    webhook = make_webhook(organization, owner).webhook
    org = f"/v1/organizations/{organization.id}"
    keys = f"/v1/projects/{project.id}/api-keys"
    return [
        ("/v1/analyses/{}", analysis.id),
        ("/v1/projects/{}/api-keys", project.id),
        (keys + "/{}", api_key.id),
        (keys + "/{}/usage", api_key.id),
        ("/v1/organizations/{}/projects", organization.id),
        ("/v1/organizations/{}/members", organization.id),
        (org + "/webhooks/{}", webhook.id),
        (org + "/webhooks/{}/deliveries", webhook.id),
    ]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_an_id_spelled_otherwise_is_not_found(owner, project, paths, spelling):
    client = user_client(owner)
    header = {"HTTP_X_PROJECT_ID": str(project.id)}  # the analysis's project (a JWT's choice)
    for path, resource_id in paths:
        canonical = str(resource_id)
        assert client.get(path.format(canonical), **header).status_code == 200, path
        assert client.get(path.format(canonical.upper()), **header).status_code == 200, path
        other = client.get(path.format(SPELLINGS[spelling](canonical)), **header)
        assert other.status_code == 404, (path, other.status_code)
        assert error_code(other) in ("NOT_FOUND", "PROJECT_NOT_FOUND")
