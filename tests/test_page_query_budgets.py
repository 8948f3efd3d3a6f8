"""Every dashboard page and /v1 list costs the same queries for a tenant of a few rows of
each kind as for one of many: no page reads per row (an N+1), whatever grows — members,
invitations, projects, keys of every kind and state, their usage, audit events, webhooks
and their deliveries. A large-tenant audit measured each page at 1,500 members, 1,200
projects, 3,300 keys and 100,000 events; this holds what it found."""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.accounts.models import User
from apps.apikeys import keyformat
from apps.apikeys.models import ApiKey, KeyScope, KeyType, KeyUsage
from apps.audit.models import AuditEvent
from apps.invitations.models import Invitation
from apps.orgs.models import Membership
from apps.projects.models import Project
from apps.webhooks.models import Delivery, Event
from core.permissions import ALL_PERMISSIONS, Role
from tests.conftest import access_token_for, bearer
from tests.factories import make_webhook
from tests.pages import logged_in

pytestmark = pytest.mark.django_db

ROLES = [Role.OWNER, Role.ADMIN, Role.MEMBER, Role.VIEWER]


def grow(organization, project, owner, webhook, count: int) -> None:
    """`count` more of every kind of row the pages list, in every state they draw apart."""
    now = timezone.now()
    tag = uuid.uuid4().hex[:8]
    users = User.objects.bulk_create(
        User(email=f"{tag}-{n}@example.com", password="!") for n in range(count)
    )
    Membership.objects.bulk_create(
        Membership(organization=organization, user=u, role=ROLES[n % 4])
        for n, u in enumerate(users)
    )
    Invitation.objects.bulk_create(
        Invitation(
            organization=organization,
            email=f"{tag}-{n}@example.org",
            normalized_email=f"{tag}-{n}@example.org",
            role=Role.MEMBER,
            token_digest=secrets.token_hex(32),
            invited_by=owner,
            expires_at=now + timedelta(days=6),
        )
        for n in range(count)
    )
    projects = Project.objects.bulk_create(
        Project(organization=organization, name=f"{tag} {n}") for n in range(count)
    )

    def key(n, **fields):
        plaintext = f"{tag}-{n}-{fields['type']}-{fields['scope']}"
        return ApiKey(
            organization=organization,
            name=f"{tag} {n}",
            prefix=f"x_{n:08d}",
            digest=keyformat.digest(plaintext),
            permissions=list(ALL_PERMISSIONS),
            created_by=owner,
            created_by_email=owner.email,
            last_used_at=now - timedelta(hours=n),
            last_used_ip="203.0.113.7",
            revoked_at=now if n % 5 == 0 else None,
            expires_at=now + timedelta(days=3) if n % 5 == 1 else None,
            **fields,
        )

    keys = ApiKey.objects.bulk_create(
        [
            key(n, project=project, type=KeyType.SECRET, scope=KeyScope.PROJECT, legacy=n % 7 == 1)
            for n in range(count)
        ]
        + [
            key(n, project=project, type=KeyType.PUBLIC, scope=KeyScope.PROJECT)
            for n in range(count)
        ]
        + [
            key(
                n,
                type=KeyType.SECRET,
                scope=KeyScope.ORGANIZATION,
                project_ids=[str(projects[n].id)] if n % 2 else [],
                last_used_project=projects[n],
                rate_limit_requests=10 if n % 3 == 0 else None,
                rate_limit_seconds=60 if n % 3 == 0 else None,
            )
            for n in range(count)
        ]
    )
    for previous, successor in zip(keys[: count - 1 : 4], keys[1:count:4], strict=True):
        successor.replaces = previous
    ApiKey.objects.bulk_update(keys, ["replaces"])
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    KeyUsage.objects.bulk_create(
        KeyUsage(
            key=k,
            granularity="day",
            start=day - timedelta(days=d),
            epoch="e",
            requests=5,
            refused=1,
        )
        for k in keys
        for d in range(0, 30, 3)
    )
    AuditEvent.objects.bulk_create(
        AuditEvent(
            organization=organization,
            project=project if n % 2 else None,
            action="key.minted",
            actor_type="user",
            actor_user=owner,
            actor_label=owner.email,
            target_type="key",
            target_id=str(keys[n].id),
            target_label=keys[n].name,
            details={"name": keys[n].name},
        )
        for n in range(count)
    )
    events = Event.objects.bulk_create(
        Event(organization=organization, type="key.minted", data={}) for _ in range(count)
    )
    Delivery.objects.bulk_create(
        Delivery(event=e, webhook=webhook, status="delivered", attempts=1, last_status_code=200)
        for e in events
    )


@pytest.fixture
def tenant(organization, project, owner, admin, member, viewer):
    webhook = make_webhook(organization, owner).webhook
    return (
        organization,
        project,
        owner,
        webhook,
        {
            "owner": owner,
            "admin": admin,
            "member": member,
            "viewer": viewer,
        },
    )


def page_urls(organization, project) -> dict[str, str]:
    secret = ApiKey.objects.filter(project=project, type=KeyType.SECRET).earliest("created_at")
    org_key = ApiKey.objects.filter(scope=KeyScope.ORGANIZATION).earliest("created_at")
    return {
        "home": "/",
        "home ?org": f"/?org={organization.id}",
        "members": f"/orgs/{organization.id}/members/",
        "org keys": f"/orgs/{organization.id}/api-keys/",
        "org keys unused": f"/orgs/{organization.id}/api-keys/?unused=30",
        "org key": f"/orgs/{organization.id}/api-keys/{org_key.id}/",
        "audit log": f"/orgs/{organization.id}/audit-log/",
        "webhooks": f"/orgs/{organization.id}/webhooks/",
        "overview": f"/projects/{project.id}/",
        "sdk keys": f"/projects/{project.id}/sdk-keys/",
        "api keys": f"/projects/{project.id}/api-keys/",
        "api key": f"/projects/{project.id}/api-keys/{secret.id}/",
        "account": "/account/",
    }


def api_urls(organization, project, webhook) -> dict[str, str]:
    base = f"/v1/organizations/{organization.id}"
    return {
        "organizations": "/v1/organizations",
        "projects": f"{base}/projects",
        "members": f"{base}/members",
        "audit events": f"{base}/audit-events",
        "org keys": f"{base}/api-keys",
        "invitations": f"{base}/invitations",
        "webhooks": f"{base}/webhooks",
        "deliveries": f"{base}/webhooks/{webhook.id}/deliveries",
        "sdk keys": f"/v1/projects/{project.id}/sdk-keys",
        "api keys": f"/v1/projects/{project.id}/api-keys",
    }


def queries_of(client, url: str, **headers) -> int:
    client.get(url, **headers)  # warmed up: a first view may record what it saw
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url, **headers)
    assert response.status_code in (200, 403), (url, response.status_code)
    return len(ctx.captured_queries)


@pytest.mark.parametrize("role", ["owner", "admin", "member", "viewer"])
def test_each_page_costs_the_same_queries_for_3_rows_as_for_60(tenant, role):
    organization, project, owner, webhook, users = tenant
    client = logged_in(users[role])
    grow(organization, project, owner, webhook, 3)
    urls = page_urls(organization, project)
    few = {name: queries_of(client, url) for name, url in urls.items()}

    grow(organization, project, owner, webhook, 60)
    many = {name: queries_of(client, url) for name, url in urls.items()}

    assert many == few


def test_each_v1_list_costs_the_same_queries_for_3_rows_as_for_60(tenant, api_client):
    organization, project, owner, webhook, _users = tenant
    headers = {**bearer(access_token_for(owner)), "HTTP_X_PROJECT_ID": str(project.id)}
    grow(organization, project, owner, webhook, 3)
    urls = api_urls(organization, project, webhook)
    few = {name: queries_of(api_client, url, **headers) for name, url in urls.items()}

    grow(organization, project, owner, webhook, 60)
    many = {name: queries_of(api_client, url, **headers) for name, url in urls.items()}

    assert many == few
