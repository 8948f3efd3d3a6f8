"""GET /v1/organizations/{orgId}/audit-events: owners and admins, read-only (SPEC §4.7)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.apikeys.keyformat import KeyKind
from apps.audit.models import AuditEvent
from apps.audit.services import Action, record_event
from tests.factories import OrganizationFactory, make_key
from tests.orgs.helpers import (
    MANAGERS,
    ROLES,
    bearer_client,
    error_code,
    error_fields,
    send,
    user_client,
)

pytestmark = pytest.mark.django_db


def events_url(organization) -> str:
    return f"/v1/organizations/{organization.id}/audit-events"


def event(organization, action=Action.MEMBER_ADDED, minutes_ago=0, **fields):
    recorded = record_event(action=action, organization_id=organization.id, **fields)
    AuditEvent.objects.filter(pk=recorded.pk).update(
        created_at=timezone.now() - timedelta(minutes=minutes_ago)
    )
    recorded.refresh_from_db()
    return recorded


def test_events_are_listed_newest_first_with_their_fields(owner, admin, organization, project):
    older = event(
        organization,
        Action.PROJECT_CREATED,
        minutes_ago=5,
        actor_user=owner,
        project_id=project.id,
        target_type="project",
        target_id=project.id,
        target_label="Checkout",
    )
    newer = event(
        organization,
        Action.MEMBER_ROLE_CHANGED,
        minutes_ago=1,
        actor_user=owner,
        target_type="user",
        target_id=admin.id,
        target_label=admin.email,
        details={"from": "member", "to": "admin"},
    )

    response = user_client(admin).get(events_url(organization))

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    assert response.json() == {
        "results": [
            {
                "id": str(newer.id),
                "action": "member.role_changed",
                "actor": {"type": "user", "id": str(owner.id), "email": owner.email},
                "target": {"type": "user", "id": str(admin.id), "label": admin.email},
                "projectId": None,
                "ip": None,
                "createdAt": newer.created_at.isoformat().replace("+00:00", "Z"),
                "details": {"from": "member", "to": "admin"},
            },
            {
                "id": str(older.id),
                "action": "project.created",
                "actor": {"type": "user", "id": str(owner.id), "email": owner.email},
                "target": {"type": "project", "id": str(project.id), "label": "Checkout"},
                "projectId": str(project.id),
                "ip": None,
                "createdAt": older.created_at.isoformat().replace("+00:00", "Z"),
                "details": {},
            },
        ],
        "next": None,
    }


def test_a_key_actor_is_shown_by_id_and_prefix(owner, organization, project):
    api_key, _ = make_key(KeyKind.SECRET, project=project)
    event(organization, Action.KEY_REVOKED, actor_key=api_key)

    actor = user_client(owner).get(events_url(organization)).json()["results"][0]["actor"]

    assert actor == {"type": "key", "id": str(api_key.id), "prefix": api_key.prefix}


def test_an_event_outlives_its_actor(owner, member, organization):
    event(organization, actor_user=member)
    member_email = member.email
    member.delete()

    actor = user_client(owner).get(events_url(organization)).json()["results"][0]["actor"]

    assert actor == {"type": "user", "id": None, "email": member_email}


def test_events_made_through_the_api_record_the_client_ip(owner, organization):
    user_client(owner).post(
        f"/v1/organizations/{organization.id}/projects",
        {"name": "Audited"},
        format="json",
        REMOTE_ADDR="203.0.113.9",
    )

    results = user_client(owner).get(events_url(organization)).json()["results"]

    assert results[0]["action"] == "project.created"
    assert results[0]["ip"] == "203.0.113.9"


def test_events_of_other_organizations_never_appear(owner, organization):
    event(OrganizationFactory(), Action.KEY_MINTED)
    mine = event(organization, Action.KEY_MINTED)

    results = user_client(owner).get(events_url(organization)).json()["results"]

    assert [e["id"] for e in results] == [str(mine.id)]


def test_events_are_filtered_by_action(owner, organization):
    minted = event(organization, Action.KEY_MINTED)
    event(organization, Action.KEY_REVOKED)

    response = user_client(owner).get(events_url(organization), {"action": "key.minted"})

    assert [e["id"] for e in response.json()["results"]] == [str(minted.id)]


def test_an_unknown_action_filter_is_a_validation_error(owner, organization):
    response = user_client(owner).get(events_url(organization), {"action": "key.deleted"})

    assert "action" in error_fields(response)


def test_events_are_paginated_and_the_next_link_keeps_the_filter(owner, organization):
    for minutes_ago in range(3):
        event(organization, Action.KEY_MINTED, minutes_ago=minutes_ago)
    event(organization, Action.KEY_REVOKED, minutes_ago=10)
    client = user_client(owner)

    first = client.get(events_url(organization), {"action": "key.minted", "limit": 2}).json()
    second = client.get(first["next"]).json()

    assert len(first["results"]) == 2
    assert [e["action"] for e in second["results"]] == ["key.minted"]
    assert second["next"] is None


@pytest.mark.parametrize("role", ROLES)
def test_only_owners_and_admins_read_the_audit_log(request, organization, role):
    event(organization)
    caller = request.getfixturevalue(role)

    response = user_client(caller).get(events_url(organization))

    if role in MANAGERS:
        assert response.status_code == 200
    elif role == "outsider":
        assert response.status_code == 404
        assert error_code(response) == "NOT_FOUND"
    else:
        assert response.status_code == 403
        assert error_code(response) == "PERMISSION_DENIED"


@pytest.mark.parametrize("kind", list(KeyKind), ids=lambda kind: kind.name.lower())
def test_api_keys_cannot_read_the_audit_log(organization, project, kind):
    _key, plaintext = make_key(kind, project=project)

    response = bearer_client(plaintext).get(
        events_url(organization), HTTP_X_PROJECT_ID=str(project.id)
    )

    assert response.status_code == 403
    assert error_code(response) == "KEY_MANAGEMENT_FORBIDDEN"


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_audit_events_cannot_be_written_changed_or_deleted(owner, organization, method):
    recorded = event(organization, Action.KEY_REVOKED)
    body = {"action": "key.minted", "id": str(recorded.id)}

    response = send(user_client(owner), method, events_url(organization), body)

    assert response.status_code == 405
    assert error_code(response) == "METHOD_NOT_ALLOWED"
    assert list(AuditEvent.objects.values_list("id", "action")) == [(recorded.id, "key.revoked")]


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_there_is_no_endpoint_for_a_single_event(owner, organization, method):
    recorded = event(organization)

    response = send(user_client(owner), method, f"{events_url(organization)}/{recorded.id}")

    assert response.status_code == 404
    assert AuditEvent.objects.filter(pk=recorded.pk).exists()
