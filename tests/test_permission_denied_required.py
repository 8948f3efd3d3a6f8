"""Every PERMISSION_DENIED names what the caller lacks in `details.required` (SPEC §3).

An API audit found the refusals for the caller's role answered `details: {}` (a viewer
minting a key, listing audit events, webhooks or invitations, setting the key policy,
creating a project), while the refusals for a missing permission named it. Each refusal
now names the permission, or the least role that may (`role:admin`, `role:owner`), or the
credential (`credential:session`). The walk below calls every operation of the OpenAPI
document as a viewer and as an API key of one permission, so an endpoint added later is
held to the same rule.
"""

from __future__ import annotations

import re
import uuid

import pytest
from rest_framework.test import APIClient

from apps.accounts.services import start_session
from apps.apikeys.keyformat import KeyKind
from apps.invitations.services import invite_member
from apps.orgs.models import Membership
from apps.projects import services as project_services
from core.permissions import Permission
from tests.factories import make_key, make_webhook
from tests.orgs.helpers import user_client

pytestmark = pytest.mark.django_db

#: The path's own object (`{id}`, `{keyId}`) by the collection the path names.
OWN_ID = {
    r"/sdk-keys/\{keyId\}": "key_PUBLIC",
    r"/v1/projects/[^/]+/api-keys/\{keyId\}": "key_SECRET",
    r"/v1/organizations/[^/]+/api-keys/\{keyId\}": "key_ORGANIZATION",
    r"/webhooks/\{id\}": "webhook",
    r"/invitations/\{id\}": "invitation",
    r"/log-sources/\{id\}": "log_source",
    r"/channels/\{id\}": "channel",
    r"/analyses/\{id\}": "analysis",
    r"/sessions/\{id\}": "session",
}
#: Operations the walk leaves out: logging out ends the session it walks with.
SKIPPED = {("post", "/v1/auth/logout")}


@pytest.fixture
def ids(organization, project, owner, member):
    owner_membership = Membership.objects.get(organization=organization, user=owner)
    analysis = user_client(owner).post(
        "/v1/analyses",
        {"title": "t", "input": "i"},
        format="json",
        HTTP_X_PROJECT_ID=str(project.id),
    )
    return {
        "orgId": organization.id,
        "projectId": project.id,
        "userId": member.id,
        "token": "not-a-token",
        "session": uuid.uuid4(),
        "webhook": make_webhook(organization, owner).webhook.id,
        "invitation": invite_member(
            actor_membership=owner_membership, email="invited@example.com", role="member"
        ).id,
        "log_source": project_services.create_log_source(
            project=project, name="edge", kind="http"
        ).id,
        "channel": project_services.create_channel(
            project=project, name="c", kind="email", target="c@example.com"
        ).id,
        "analysis": analysis.json()["id"],
        **{f"key_{kind.name}": make_key(kind, project=project)[0].id for kind in KeyKind},
    }


def _url(template: str, ids: dict) -> str:
    for pattern, name in OWN_ID.items():
        if re.search(pattern, template):
            template = re.sub(r"\{(id|keyId)\}", str(ids[name]), template)
    return re.sub(r"\{(\w+)\}", lambda m: str(ids[m.group(1)]), template)


def _required(credential: str, project_id, ids: dict) -> dict[tuple[str, str], str]:
    """`details.required` of every operation of the document that answers PERMISSION_DENIED
    to `credential` (with `X-Project-Id: project_id`)."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {credential}", HTTP_X_PROJECT_ID=str(project_id))
    document = APIClient().get("/v1/schema").json()
    required = {}
    for template, item in document["paths"].items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or (method, template) in SKIPPED:
                continue
            body = {} if "requestBody" in operation else None
            response = getattr(client, method)(_url(template, ids), body, format="json")
            if response.status_code == 403 and response.json()["error"]["code"] == (
                "PERMISSION_DENIED"
            ):
                required[method, template] = response.json()["error"]["details"].get("required")
    return required


def test_every_refusal_of_a_viewer_names_what_it_needs(ids, viewer):
    named = _required(start_session(viewer).access, ids["projectId"], ids)

    assert all(isinstance(v, str) and v for v in named.values()), named
    assert named["post", "/v1/projects/{projectId}/api-keys"] == "role:admin"
    assert named["post", "/v1/organizations/{orgId}/projects"] == "role:admin"
    assert named["get", "/v1/organizations/{orgId}/audit-events"] == "role:admin"
    assert named["get", "/v1/organizations/{orgId}/webhooks"] == "role:admin"
    assert named["get", "/v1/organizations/{orgId}/invitations"] == "role:admin"
    assert named["patch", "/v1/organizations/{orgId}/members/{userId}"] == "role:admin"
    assert named["patch", "/v1/organizations/{orgId}"] == "role:owner"
    assert named["post", "/v1/analyses"] == "analysis:create"
    assert named["post", "/v1/config/log-sources"] == "config:write"


def test_an_admin_is_told_the_owner_role_is_needed(ids, admin):
    response = user_client(admin).patch(
        f"/v1/organizations/{ids['orgId']}", {"keyMaxLifetimeDays": 30}, format="json"
    )

    assert response.status_code == 403
    assert response.json()["error"]["details"] == {"required": "role:owner"}


def test_every_refusal_of_a_key_names_what_it_needs(ids, project):
    key = make_key(KeyKind.SECRET, project=project, permissions=[Permission.ANALYSIS_READ])[1]

    named = _required(key, project.id, ids)

    assert all(isinstance(v, str) and v for v in named.values()), named
    assert named["post", "/v1/analyses"] == "analysis:create"
    assert named["get", "/v1/config"] == "config:read"
    assert named["get", "/v1/auth/sessions"] == "credential:session"
