"""Every `/v1` body that writes is closed: a member the endpoint does not take is a
VALIDATION_ERROR naming it, and nothing is written.

An API audit found five behaviours: most bodies dropped unknown members silently (a
`keyMaxLifetimeDays` sent at organization creation was lost with a 201; an analysis's
`projectId` was ignored and the analysis made in the header's project), the key endpoints
refused only near-miss spellings, and two PATCHes refused everything. One rule now, the
secure one (`core.api.object_body`), which the OpenAPI document states too
(`additionalProperties: false`); an empty PATCH is refused everywhere, and a PATCH that
changes nothing leaves `updatedAt` alone.
"""

from __future__ import annotations

import re

import pytest
from django.apps import apps
from rest_framework.test import APIClient

from apps.accounts.models import User
from apps.apikeys.keyformat import KeyKind
from apps.projects import services as project_services
from apps.projects.models import LogSource
from tests.factories import make_key
from tests.orgs.helpers import error_fields, user_client

pytestmark = pytest.mark.django_db

UNKNOWN = {"bogus": 1}
MINTED = {"name": "k", "permissions": ["analysis:read", "analysis:create"]}
KEY_COLLECTIONS = {
    KeyKind.PUBLIC: "/v1/projects/{project}/sdk-keys",
    KeyKind.SECRET: "/v1/projects/{project}/api-keys",
    KeyKind.ORGANIZATION: "/v1/organizations/{org}/api-keys",
}


@pytest.fixture
def world(organization, project, other_project, owner, member):
    """The ids the paths name, a key of each kind, a log source, a channel and an analysis."""
    keys = {kind: make_key(kind, project=project, actor=owner)[0] for kind in KeyKind}
    secret = make_key(KeyKind.SECRET, project=project, actor=owner)[1]
    log_source = project_services.create_log_source(project=project, name="edge", kind="http")
    channel = project_services.create_channel(
        project=project, name="on-call", kind="email", target="oncall@example.com"
    )
    analysis = user_client(owner).post(
        "/v1/analyses",
        {"title": "t", "input": "i"},
        format="json",
        HTTP_X_PROJECT_ID=str(project.id),
    )
    assert analysis.status_code == 201, analysis.json()
    User.objects.create_user("existing@example.com", "a-long-password-1")
    return {
        "org": organization.id,
        "project": project.id,
        "other_project": other_project.id,
        "member": member.id,
        "log_source": log_source.id,
        "channel": channel.id,
        "analysis": analysis.json()["id"],
        "secret": secret,
        **{f"key_{kind.name}": key.id for kind, key in keys.items()},
    }


#: (method, path, a body the endpoint takes, who sends it): the walk adds an unknown member.
#: `owner`: the owner's session; `key`: a secret key of the project (project-scoped paths);
#: `anonymous`: no credential.
WRITES = [
    ("post", "/v1/organizations", {"name": "Org3"}, "owner"),
    ("patch", "/v1/organizations/{org}", {"keyMaxLifetimeDays": 30}, "owner"),
    ("post", "/v1/organizations/{org}/projects", {"name": "P2"}, "owner"),
    (
        "post",
        "/v1/organizations/{org}/members",
        {"email": "existing@example.com", "role": "member"},
        "owner",
    ),
    ("patch", "/v1/organizations/{org}/members/{member}", {"role": "admin"}, "owner"),
    (
        "post",
        "/v1/organizations/{org}/invitations",
        {"email": "new@example.com", "role": "member"},
        "owner",
    ),
    (
        "post",
        "/v1/organizations/{org}/webhooks",
        {"url": "https://hooks.example.com/x", "events": ["key.minted"]},
        "owner",
    ),
    *[("post", collection, MINTED, "owner") for collection in KEY_COLLECTIONS.values()],
    *[
        ("patch", f"{collection}/{{key_{kind.name}}}", {"name": "renamed"}, "owner")
        for kind, collection in KEY_COLLECTIONS.items()
    ],
    *[
        ("post", f"{collection}/{{key_{kind.name}}}/roll", {"graceSeconds": 0}, "owner")
        for kind, collection in KEY_COLLECTIONS.items()
    ],
    ("post", "/v1/leaked-keys", {"keys": []}, "anonymous"),
    ("post", "/v1/analyses", {"title": "t", "input": "i"}, "key"),
    ("post", "/v1/analyses/{analysis}/follow-ups", {"question": "why?"}, "key"),
    ("post", "/v1/analyses/{analysis}/feedback", {"rating": "up"}, "key"),
    ("post", "/v1/config/log-sources", {"name": "web", "kind": "http"}, "key"),
    ("patch", "/v1/config/log-sources/{log_source}", {"name": "web2"}, "key"),
    (
        "post",
        "/v1/config/channels",
        {"name": "c", "kind": "email", "target": "c@example.com"},
        "key",
    ),
    ("patch", "/v1/config/channels/{channel}", {"name": "c2"}, "key"),
    (
        "post",
        "/v1/auth/signup",
        {"email": "new@example.com", "password": "a-long-password-2", "organizationName": "N"},
        "anonymous",
    ),
    ("post", "/v1/auth/login", {"email": "existing@example.com", "password": "x"}, "anonymous"),
    ("post", "/v1/auth/refresh", {"refresh": "x"}, "anonymous"),
    ("post", "/v1/auth/logout", {}, "owner"),
    ("post", "/v1/auth/password-reset", {"email": "existing@example.com"}, "anonymous"),
    ("post", "/v1/auth/password-reset/confirm", {"token": "x", "password": "y"}, "anonymous"),
    ("post", "/v1/auth/login/2fa", {"mfaToken": "x", "code": "123456"}, "anonymous"),
    ("post", "/v1/auth/2fa/enable", {"code": "123456"}, "owner"),
    ("post", "/v1/auth/2fa/disable", {"password": "x"}, "owner"),
]
PATCHES = [(path, body, who) for method, path, body, who in WRITES if method == "patch"]


def _client(who: str, world: dict, owner) -> APIClient:
    if who == "owner":
        return user_client(owner)
    client = APIClient()
    if who == "key":
        client.credentials(
            HTTP_AUTHORIZATION=f"Bearer {world['secret']}", HTTP_X_PROJECT_ID=str(world["project"])
        )
    return client


def _stored() -> dict[str, list]:
    """Every row of every model, but the columns a request marks on its credential (a key's
    or a session's `last_used_*`, `last_seen_at`)."""
    stored = {}
    for model in apps.get_models():
        columns = [f.attname for f in model._meta.concrete_fields if not f.name.startswith("last_")]
        stored[model._meta.label] = sorted(map(repr, model.objects.values_list(*columns)))
    return stored


@pytest.mark.parametrize(("method", "path", "body", "who"), WRITES, ids=lambda v: str(v)[:40])
def test_an_unknown_member_is_refused_by_name_and_nothing_is_written(
    world, owner, settings, method, path, body, who
):
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    client = _client(who, world, owner)
    before = _stored()

    response = getattr(client, method)(path.format(**world), body | UNKNOWN, format="json")

    assert response.status_code == 400
    assert error_fields(response) == {"bogus": ["Unknown field."]}
    assert _stored() == before


def test_a_policy_sent_at_organization_creation_is_refused_not_dropped(owner):
    response = user_client(owner).post(
        "/v1/organizations", {"name": "Org3", "keyMaxLifetimeDays": 5}, format="json"
    )

    assert error_fields(response) == {"keyMaxLifetimeDays": ["Unknown field."]}


def test_an_analysis_never_takes_its_project_from_the_body(world):
    client = _client("key", world, None)

    response = client.post(
        "/v1/analyses",
        {"title": "t", "input": "i", "projectId": str(world["other_project"])},
        format="json",
    )

    assert error_fields(response) == {"projectId": ["Unknown field."]}


def test_a_misspelled_member_still_names_the_field_it_resembles(world):
    client = _client("key", world, None)

    response = client.patch(
        f"/v1/config/log-sources/{world['log_source']}",
        {"setting": {}, "nmae": "zzz"},
        format="json",
    )

    assert error_fields(response) == {
        "setting": ["Unknown field: did you mean settings?"],
        "nmae": ["Unknown field."],
    }


@pytest.mark.parametrize(("path", "body", "who"), PATCHES, ids=lambda v: str(v)[:40])
def test_an_empty_patch_is_refused_naming_what_it_takes(world, owner, path, body, who):
    client = _client(who, world, owner)
    before = _stored()

    response = client.patch(path.format(**world), {}, format="json")

    (message,) = error_fields(response)["body"]
    assert message.startswith("Send at least one of: ")
    assert set(body) <= set(message.removeprefix("Send at least one of: ").rstrip(".").split(", "))
    assert _stored() == before


@pytest.mark.parametrize("body", [{"name": "edge"}, {"kind": "http"}, {"settings": {}}])
def test_a_patch_that_changes_nothing_leaves_updated_at_alone(world, body):
    client = _client("key", world, None)
    before = LogSource.objects.get(pk=world["log_source"]).updated_at

    response = client.patch(f"/v1/config/log-sources/{world['log_source']}", body, format="json")

    assert response.status_code == 200
    assert response.json()["updatedAt"] == before.isoformat().replace("+00:00", "Z")
    assert LogSource.objects.get(pk=world["log_source"]).updated_at == before


def test_a_patch_that_changes_something_moves_updated_at(world):
    client = _client("key", world, None)
    before = LogSource.objects.get(pk=world["log_source"]).updated_at

    response = client.patch(
        f"/v1/config/log-sources/{world['log_source']}", {"name": "renamed"}, format="json"
    )

    assert response.status_code == 200
    assert LogSource.objects.get(pk=world["log_source"]).updated_at > before


@pytest.mark.parametrize(
    "path",
    [
        *[f"{c}/{{key_{kind.name}}}/revoke" for kind, c in KEY_COLLECTIONS.items()],
        "/v1/auth/2fa/setup",
    ],
)
def test_a_bodyless_action_still_takes_an_empty_body(world, owner, path):
    response = user_client(owner).post(path.format(**world))

    assert response.status_code == 200, response.json()


def test_the_document_closes_every_write_body_and_the_walk_covers_each(client):
    document = client.get("/v1/schema").json()
    schemas = document["components"]["schemas"]
    walked = [(method, re.sub(r"\{[^}]+\}", "{}", path)) for method, path, _, _ in WRITES]
    for template, item in document["paths"].items():
        for method, operation in item.items():
            content = (operation.get("requestBody") or {}).get("content", {})
            reference = content.get("application/json", {}).get("schema", {}).get("$ref")
            if method not in ("post", "put", "patch") or reference is None:
                continue
            body = schemas[reference.rsplit("/", 1)[-1]]
            assert body["additionalProperties"] is False, template
            if method == "patch":
                assert body["minProperties"] == 1, template
            assert (method, re.sub(r"\{[^}]+\}", "{}", template)) in walked, template
