"""Organizations, projects and members (SPEC §4.2)."""

from __future__ import annotations

import base64
import uuid
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.test import override_settings

from apps.accounts.services import deactivate_user
from apps.apikeys.keyformat import KeyKind
from apps.audit.models import AuditEvent
from apps.orgs.models import Membership
from apps.projects.models import Project
from core.permissions import Role
from tests.factories import MembershipFactory, ProjectFactory, UserFactory, make_key
from tests.orgs.helpers import (
    MANAGERS,
    ROLES,
    bearer_client,
    cookie_client,
    error_code,
    error_fields,
    send,
    user_client,
    with_csrf,
)

pytestmark = pytest.mark.django_db

NO_POLICY = {"keyMaxLifetimeDays": None}

ORGS = "/v1/organizations"


def projects_url(org) -> str:
    return f"{ORGS}/{org.id}/projects"


def members_url(org) -> str:
    return f"{ORGS}/{org.id}/members"


def member_url(org, user) -> str:
    return f"{ORGS}/{org.id}/members/{user.id}"


def role_of(user, org) -> str | None:
    membership = Membership.objects.filter(user=user, organization=org).first()
    return membership.role if membership else None


# Organizations


def test_organizations_lists_the_callers_organizations_with_their_role(owner, organization):
    other = MembershipFactory(user=owner, role=Role.VIEWER).organization

    response = user_client(owner).get(ORGS)

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    assert response.json() == {
        "results": [
            {"id": str(organization.id), "name": "Acme", "role": "owner", **NO_POLICY},
            {"id": str(other.id), "name": other.name, "role": "viewer", **NO_POLICY},
        ],
        "next": None,
    }


def test_organizations_never_lists_another_tenant(owner, outsider):
    names = [org["name"] for org in user_client(outsider).get(ORGS).json()["results"]]

    assert names == ["Elsewhere"]


def test_any_user_creates_an_organization_and_owns_it(outsider):
    client = user_client(outsider)

    response = client.post(ORGS, {"name": "  Fresh Start  "}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "Fresh Start"
    assert body["role"] == "owner"
    assert role_of(outsider, body["id"]) == Role.OWNER
    assert body in client.get(ORGS).json()["results"]


@pytest.mark.parametrize("name", ["", "   ", "x" * 101, 7, None, "Acme\x01", "Acme\u202eCorp"])
def test_creating_an_organization_needs_a_valid_name(outsider, name):
    response = user_client(outsider).post(ORGS, {"name": name}, format="json")

    assert response.status_code == 400
    assert "name" in error_fields(response)


# Projects


def test_projects_lists_the_organizations_projects_newest_first(member, organization, project):
    newer = ProjectFactory(organization=organization, name="Newer")
    ProjectFactory(name="Another tenant's")

    response = user_client(member).get(projects_url(organization))

    assert response.status_code == 200
    assert response.json()["results"] == [
        {
            "id": str(p.id),
            "name": p.name,
            "organizationId": str(organization.id),
            "createdAt": p.created_at.isoformat().replace("+00:00", "Z"),
        }
        for p in (newer, project)
    ]
    assert response.json()["next"] is None


def test_projects_are_paginated_with_a_cursor(member, organization):
    for name in ("One", "Two", "Three"):
        ProjectFactory(organization=organization, name=name)
    client = user_client(member)

    first = client.get(projects_url(organization), {"limit": 2}).json()
    second = client.get(first["next"]).json()

    names = [p["name"] for p in first["results"] + second["results"]]
    assert names == ["Three", "Two", "One"]
    assert second["next"] is None


@pytest.mark.parametrize("limit", ["0", "101", "x", "²", "①"])
def test_projects_page_size_outside_1_to_100_is_a_validation_error(member, organization, limit):
    response = user_client(member).get(projects_url(organization), {"limit": limit})

    assert "limit" in error_fields(response)


@pytest.mark.parametrize("position", ["garbage", "2027-13-45T00:00:00", "2020-01-01%00"])
def test_a_cursor_whose_position_is_not_a_time_is_a_validation_error(
    member, organization, position
):
    cursor = base64.b64encode(f"p={position}".encode()).decode()
    response = user_client(member).get(projects_url(organization), {"cursor": cursor})

    assert "cursor" in error_fields(response)


@pytest.mark.parametrize(
    "position",
    [
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        "2030-01-01T00:00:00+16:00",
        "2030-01-31T12:00:00+05:30:15.5",  # PostgreSQL refused it in the query
        "2030-01-31T12:00:00+05:30:15",
        # Spellings Django's parse reads and `fromisoformat` does not (a fuzzing audit).
        "0001-1-01T00:00:00+14:00",
        "9999-12-31T23:59:9-14:00",
        "0002-01-6 17:32:51-21:53",
    ],
)
def test_a_cursor_at_a_time_no_column_holds_is_a_validation_error(member, organization, position):
    """Not a 500 (SQLite's conversion to UTC overflowed) nor a 400 on `body` (PostgreSQL
    refused an offset beyond ±15:59 in the query)."""
    cursor = base64.b64encode(urlencode({"p": position}).encode()).decode()
    response = user_client(member).get(projects_url(organization), {"cursor": cursor})

    assert "cursor" in error_fields(response)


@pytest.mark.parametrize("url", ["/v1/organizations", "/v1/organizations/{}/members"])
def test_a_cursor_holding_a_nul_is_a_validation_error(member, organization, url):
    """A NUL no text column holds: PostgreSQL refused it in the query (a 400 on `body`)."""
    cursor = base64.b64encode(urlencode({"p": "a\x00b"}).encode()).decode()
    response = user_client(member).get(url.format(organization.id), {"cursor": cursor})

    assert "cursor" in error_fields(response)


def test_admin_creates_a_project_and_it_is_audited(admin, organization):
    response = user_client(admin).post(projects_url(organization), {"name": "API"}, format="json")

    assert response.status_code == 201
    project = Project.objects.get(id=response.json()["id"])
    assert project.organization == organization
    assert response.json()["organizationId"] == str(organization.id)
    event = AuditEvent.objects.get(action="project.created")
    assert event.actor_user == admin
    assert event.project_id == project.id


@override_settings(THROTTLE_RATES=settings.THROTTLE_RATES | {"create_org_user": (2, 86400)})
def test_organizations_created_are_throttled_per_user(outsider):
    client = user_client(outsider)
    before = Membership.objects.filter(user=outsider).count()
    made = [
        client.post("/v1/organizations", {"name": f"Org {n}"}, format="json").status_code
        for n in range(3)
    ]

    assert made == [201, 201, 429]
    assert Membership.objects.filter(user=outsider).count() == before + 2


@pytest.mark.parametrize("body", [{}, {"name": "Pay\nments"}, {"name": "Pay\u2066ments"}])
def test_creating_a_project_needs_a_valid_name(owner, organization, project, body):
    response = user_client(owner).post(projects_url(organization), body, format="json")

    assert "name" in error_fields(response)
    assert list(organization.projects.all()) == [project]


# Members


def test_members_lists_everyone_with_their_role(member, organization, owner, admin, viewer):
    response = user_client(member).get(members_url(organization))

    assert response.status_code == 200
    expected = sorted(
        [(owner, "owner"), (admin, "admin"), (member, "member"), (viewer, "viewer")],
        key=lambda pair: pair[0].email,
    )
    assert response.json() == {
        "results": [
            {"user": {"id": str(user.id), "email": user.email}, "role": role}
            for user, role in expected
        ],
        "next": None,
    }


def pages_of(client, url: str) -> list[list]:
    """Every page of a list at ?limit=1, following `next` (SPEC §4: cursor pagination)."""
    pages, next_url = [], f"{url}?limit=1"
    while next_url:
        body = client.get(next_url).json()
        pages.append(body["results"])
        next_url = body["next"]
    return pages


def test_members_are_paged_by_email_with_a_cursor(member, organization, owner, admin, viewer):
    pages = pages_of(user_client(member), members_url(organization))

    assert all(len(page) == 1 for page in pages)
    emails = [page[0]["user"]["email"] for page in pages]
    assert emails == sorted(u.email for u in (owner, admin, member, viewer))


def test_organizations_are_paged_by_name_with_a_cursor(owner, organization):
    for name in ("Zeta", "Beta", "Acme"):  # a second "Acme": equal names still page once each
        MembershipFactory(user=owner, role=Role.VIEWER, organization__name=name)

    pages = pages_of(user_client(owner), ORGS)

    assert all(len(page) == 1 for page in pages)
    assert [page[0]["name"] for page in pages] == ["Acme", "Acme", "Beta", "Zeta"]
    assert len({page[0]["id"] for page in pages}) == 4


@pytest.mark.parametrize("limit", ["0", "101", "x"])
def test_members_and_organizations_pages_outside_1_to_100_are_validation_errors(
    member, organization, limit
):
    client = user_client(member)
    for url in (ORGS, members_url(organization)):
        assert "limit" in error_fields(client.get(url, {"limit": limit}))


def test_admin_adds_an_existing_user_as_a_member(admin, organization):
    newcomer = UserFactory(email="newcomer@example.com")

    response = user_client(admin).post(
        members_url(organization),
        {"email": "NEWCOMER@example.com", "role": "viewer"},
        format="json",
    )

    assert response.status_code == 201
    assert response.json() == {
        "user": {"id": str(newcomer.id), "email": "newcomer@example.com"},
        "role": "viewer",
    }
    assert role_of(newcomer, organization) == Role.VIEWER
    assert AuditEvent.objects.filter(action="member.added", target_id=str(newcomer.id)).exists()


def test_adding_an_unknown_email_is_not_found(owner, organization):
    response = user_client(owner).post(
        members_url(organization), {"email": "nobody@example.com", "role": "member"}, format="json"
    )

    assert response.status_code == 404
    assert error_code(response) == "NOT_FOUND"


def test_probing_addresses_by_adding_members_is_throttled_per_adder_and_client(
    owner, organization, throttle_clock
):
    """A 404 tells whether an address has an account (SPEC §4.2), which login, reset and
    invitations never do: found by an authentication audit, 200 probes in a second. A hit
    gives its count back; misses stop at the limit, and then even a hit waits."""
    client = user_client(owner)
    limit, _seconds = settings.THROTTLE_RATES["member_add_miss_ip"]
    add = lambda email: client.post(  # noqa: E731
        members_url(organization), {"email": email, "role": "viewer"}, format="json"
    )
    first = UserFactory()
    assert add(first.email).status_code == 201  # not counted

    answers = [add(f"probe-{n}@example.com").status_code for n in range(limit + 1)]

    assert answers == [404] * limit + [429]
    later = UserFactory()
    refused = add(later.email)
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert role_of(later, organization) is None
    throttle_clock.advance(3600)
    assert add(later.email).status_code == 429  # the adder's budget is a day's
    throttle_clock.advance(86400)
    assert add(later.email).status_code == 201


def test_the_per_adder_miss_budget_holds_across_clients(owner, organization, throttle_clock):
    limit, _seconds = settings.THROTTLE_RATES["member_add_miss_user"]
    client = user_client(owner)

    def add_from(address: str, email: str):
        body = {"email": email, "role": "viewer"}
        return client.post(members_url(organization), body, format="json", REMOTE_ADDR=address)

    answers = [add_from(f"203.0.113.{n + 1}", f"p{n}@example.com") for n in range(limit)]

    assert [answer.status_code for answer in answers] == [404] * limit
    assert add_from("198.51.100.7", "last@example.com").status_code == 429


def test_adding_someone_who_is_already_a_member_is_a_validation_error(owner, member, organization):
    response = user_client(owner).post(
        members_url(organization), {"email": member.email, "role": "viewer"}, format="json"
    )

    assert "email" in error_fields(response)
    assert role_of(member, organization) == Role.MEMBER


@pytest.mark.parametrize("role", ["superuser", "", None, 1])
def test_adding_with_an_unknown_role_is_a_validation_error(owner, organization, role):
    newcomer = UserFactory()

    response = user_client(owner).post(
        members_url(organization), {"email": newcomer.email, "role": role}, format="json"
    )

    assert "role" in error_fields(response)


def test_owner_changes_a_members_role(owner, member, organization):
    response = user_client(owner).patch(
        member_url(organization, member), {"role": "admin"}, format="json"
    )

    assert response.status_code == 200
    assert response.json() == {
        "user": {"id": str(member.id), "email": member.email},
        "role": "admin",
    }
    assert role_of(member, organization) == Role.ADMIN
    event = AuditEvent.objects.get(action="member.role_changed")
    assert event.details == {"from": "member", "to": "admin"}


def test_a_role_change_applies_on_the_next_request(owner, admin, organization):
    admin_client = user_client(admin)
    user_client(owner).patch(member_url(organization, admin), {"role": "viewer"}, format="json")

    response = admin_client.post(projects_url(organization), {"name": "Nope"}, format="json")

    assert response.status_code == 403
    assert error_code(response) == "PERMISSION_DENIED"


def test_admin_removes_a_member(admin, member, organization):
    response = user_client(admin).delete(member_url(organization, member))

    assert response.status_code == 204
    assert role_of(member, organization) is None
    assert AuditEvent.objects.filter(action="member.removed").exists()


def test_a_removed_member_no_longer_reaches_the_organization(owner, member, organization):
    member_client = user_client(member)
    user_client(owner).delete(member_url(organization, member))

    response = member_client.get(projects_url(organization))

    assert response.status_code == 404
    assert error_code(response) == "NOT_FOUND"


@pytest.mark.parametrize(
    "method, body",
    [("patch", {"role": "member"}), ("delete", None)],
    ids=["change", "remove"],
)
def test_admin_cannot_change_or_remove_an_owner(admin, owner, organization, method, body):
    response = send(user_client(admin), method, member_url(organization, owner), body)

    assert response.status_code == 403
    assert error_code(response) == "PERMISSION_DENIED"
    assert role_of(owner, organization) == Role.OWNER


def test_admin_cannot_make_an_owner(admin, owner, member, organization):
    client = user_client(admin)

    promote = client.patch(member_url(organization, member), {"role": "owner"}, format="json")
    add = client.post(
        members_url(organization), {"email": UserFactory().email, "role": "owner"}, format="json"
    )

    assert promote.status_code == add.status_code == 403
    assert role_of(member, organization) == Role.MEMBER
    owners = Membership.objects.filter(organization=organization, role=Role.OWNER)
    assert list(owners.values_list("user", flat=True)) == [owner.id]


def test_owner_makes_another_owner(owner, admin, organization):
    response = user_client(owner).patch(
        member_url(organization, admin), {"role": "owner"}, format="json"
    )

    assert response.status_code == 200
    assert role_of(admin, organization) == Role.OWNER


@pytest.mark.parametrize(
    "method, body",
    [("patch", {"role": "admin"}), ("delete", None)],
    ids=["demote", "remove"],
)
def test_the_last_owner_cannot_leave_or_be_demoted(owner, organization, method, body):
    response = send(user_client(owner), method, member_url(organization, owner), body)

    assert response.status_code == 409
    assert error_code(response) == "LAST_OWNER"
    assert role_of(owner, organization) == Role.OWNER


def test_an_owner_may_leave_while_another_owner_remains(owner, admin, organization):
    Membership.objects.filter(user=admin, organization=organization).update(role=Role.OWNER)

    response = user_client(owner).delete(member_url(organization, owner))

    assert response.status_code == 204
    assert role_of(owner, organization) is None


@pytest.mark.parametrize(
    "method, body",
    [("patch", {"role": "admin"}), ("delete", None)],
    ids=["demote", "remove"],
)
def test_the_last_active_owner_cannot_leave_beside_deactivated_owners(
    owner, admin, organization, method, body
):
    # A deactivated owner cannot act, and an admin may not make owners: leaving them as the
    # only owners would leave the organization's settings to nobody.
    former = MembershipFactory(organization=organization, role=Role.OWNER).user
    deactivate_user(user=former)
    events_before = AuditEvent.objects.count()  # the deactivation's member.deactivated

    response = send(user_client(owner), method, member_url(organization, owner), body)

    assert response.status_code == 409
    assert error_code(response) == "LAST_OWNER"
    assert "deactivated" in response.json()["error"]["message"]
    assert role_of(owner, organization) == Role.OWNER
    assert AuditEvent.objects.count() == events_before


def test_an_active_owner_may_remove_a_deactivated_owner(owner, organization):
    former = MembershipFactory(organization=organization, role=Role.OWNER).user
    deactivate_user(user=former)

    response = user_client(owner).delete(member_url(organization, former))

    assert response.status_code == 204
    assert role_of(former, organization) is None
    assert role_of(owner, organization) == Role.OWNER


@pytest.mark.parametrize("user_id", ["not-a-uuid", pytest.param(str(uuid.uuid4()), id="unknown")])
def test_changing_someone_who_is_not_a_member_is_not_found(owner, organization, user_id):
    response = user_client(owner).patch(
        f"{members_url(organization)}/{user_id}", {"role": "member"}, format="json"
    )

    assert response.status_code == 404
    assert error_code(response) == "NOT_FOUND"


def test_a_member_of_another_organization_cannot_be_addressed(owner, organization, outsider):
    response = user_client(owner).delete(member_url(organization, outsider))

    assert response.status_code == 404
    assert role_of(outsider, Membership.objects.get(user=outsider).organization) == Role.OWNER


def test_a_malformed_organization_id_is_not_found(owner):
    response = user_client(owner).get(f"{ORGS}/not-a-uuid/projects")

    assert response.status_code == 404
    assert error_code(response) == "NOT_FOUND"


# Who may do what: every endpoint, every role


def org_endpoints(organization, viewer, member):
    """(method, path, body, success status, manager-only) for each endpoint on `organization`."""
    return [
        ("get", projects_url(organization), None, 200, False),
        ("post", projects_url(organization), {"name": "New"}, 201, True),
        ("get", members_url(organization), None, 200, False),
        (
            "post",
            members_url(organization),
            {"email": "fresh@example.com", "role": "member"},
            201,
            True,
        ),
        ("patch", member_url(organization, viewer), {"role": "member"}, 200, True),
        ("delete", member_url(organization, member), None, 204, True),
    ]


ENDPOINT_IDS = [
    "list-projects",
    "create-project",
    "list-members",
    "add-member",
    "change-role",
    "remove",
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("index", range(6), ids=ENDPOINT_IDS)
def test_role_matrix(request, organization, owner, admin, member, viewer, outsider, role, index):
    UserFactory(email="fresh@example.com")
    method, path, body, success, manager_only = org_endpoints(organization, viewer, member)[index]
    caller = request.getfixturevalue(role)

    response = send(user_client(caller), method, path, body)

    if role == "outsider":
        assert response.status_code == 404
        assert error_code(response) == "NOT_FOUND"
    elif manager_only and role not in MANAGERS:
        assert response.status_code == 403
        assert error_code(response) == "PERMISSION_DENIED"
    else:
        assert response.status_code == success, response.content


@pytest.mark.parametrize("kind", list(KeyKind), ids=lambda kind: kind.name.lower())
@pytest.mark.parametrize("index", range(6), ids=ENDPOINT_IDS)
def test_api_keys_cannot_manage_organizations(organization, project, viewer, member, kind, index):
    UserFactory(email="fresh@example.com")
    _key, plaintext = make_key(kind, project=project, organization=organization)
    method, path, body, _success, _manager_only = org_endpoints(organization, viewer, member)[index]

    response = send(bearer_client(plaintext), method, path, body, HTTP_X_PROJECT_ID=str(project.id))

    assert response.status_code == 403
    assert error_code(response) == "KEY_MANAGEMENT_FORBIDDEN"
    assert role_of(member, organization) == Role.MEMBER


@pytest.mark.parametrize("kind", list(KeyKind), ids=lambda kind: kind.name.lower())
@pytest.mark.parametrize("method", ["get", "post"])
def test_api_keys_cannot_list_or_create_organizations(project, kind, method):
    _key, plaintext = make_key(kind, project=project)

    response = send(
        bearer_client(plaintext), method, ORGS, {"name": "Rogue"} if method == "post" else None
    )

    assert response.status_code == 403
    assert error_code(response) == "KEY_MANAGEMENT_FORBIDDEN"


def test_a_revoked_key_is_rejected_before_the_management_check(project):
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)
    api_key.revoked_at = api_key.created_at
    api_key.save()

    response = bearer_client(plaintext).get(ORGS)

    assert response.status_code == 401
    assert error_code(response) == "KEY_REVOKED"


def test_organization_endpoints_need_a_credential(api_client, organization):
    for path in (ORGS, projects_url(organization), members_url(organization)):
        response = api_client.get(path)

        assert response.status_code == 401
        assert error_code(response) == "AUTHENTICATION_REQUIRED"


# CSRF for the cookie session


def test_cookie_session_needs_the_csrf_token_for_unsafe_requests(owner, organization):
    client = cookie_client(owner)

    refused = client.post(projects_url(organization), {"name": "Forged"}, format="json")

    assert refused.status_code == 403
    assert not Project.objects.filter(name="Forged").exists()

    accepted = client.post(
        projects_url(organization), {"name": "Real"}, format="json", **with_csrf(client)
    )

    assert accepted.status_code == 201


def test_cookie_session_reads_without_a_csrf_token(owner, organization):
    assert cookie_client(owner).get(projects_url(organization)).status_code == 200


def test_bearer_requests_need_no_csrf_token(owner, organization):
    client = user_client(owner, enforce_csrf_checks=True)

    response = client.post(projects_url(organization), {"name": "Scripted"}, format="json")

    assert response.status_code == 201


def test_an_adder_past_their_days_misses_spends_nothing_of_their_clients(
    owner, admin, organization, throttle_clock
):
    """A review: the per-client count was taken before the adder's own was refused, so an
    adder past their day's misses used up a shared office IP's hour for everyone."""
    user_limit, _ = settings.THROTTLE_RATES["member_add_miss_user"]
    ip_limit, _ = settings.THROTTLE_RATES["member_add_miss_ip"]
    client = user_client(owner)

    def add_from(client, address: str, email: str):
        body = {"email": email, "role": "viewer"}
        return client.post(members_url(organization), body, format="json", REMOTE_ADDR=address)

    for n in range(user_limit):
        assert add_from(client, f"203.0.113.{n + 1}", f"p{n}@example.com").status_code == 404
    office = "198.51.100.7"
    refused = [add_from(client, office, f"q{n}@example.com") for n in range(ip_limit)]
    assert {answer.status_code for answer in refused} == {429}

    colleague = UserFactory()
    assert add_from(user_client(admin), office, colleague.email).status_code == 201
