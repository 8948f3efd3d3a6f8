"""Guardrails on the request path, in process (SPEC §4.10): IP allowlists, project lists, rate
limits, and the order of the checks. The same over HTTP on two servers: test_guardrails_servers."""

from __future__ import annotations

import uuid
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.test import override_settings
from django.utils import timezone

from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from apps.apikeys.services import revoke_key, update_key
from tests.factories import make_key
from tests.orgs.helpers import bearer_client, error_code

pytestmark = pytest.mark.django_db

ALLOWED = ["203.0.113.0/24", "2001:db8::/32"]


def analyses(credential, project, ip="203.0.113.9", **headers):
    client = bearer_client(credential)
    return client.get("/v1/analyses", HTTP_X_PROJECT_ID=str(project.id), REMOTE_ADDR=ip, **headers)


# IP allowlists


@pytest.mark.parametrize("kind", [KeyKind.SECRET, KeyKind.ORGANIZATION], ids=["secret", "org"])
@pytest.mark.parametrize(
    "ip, allowed",
    [
        ("203.0.113.1", True),
        ("203.0.113.255", True),
        ("2001:db8:ffff::1", True),
        ("::ffff:203.0.113.7", True),  # an IPv4 client seen through an IPv6 socket
        ("203.0.114.1", False),
        ("198.51.100.7", False),
        ("2001:db9::1", False),
        ("::1", False),
    ],
)
def test_only_clients_inside_the_allowlist_pass(project, kind, ip, allowed):
    _api_key, plaintext = make_key(kind, project=project, allowed_ips=ALLOWED)

    response = analyses(plaintext, project, ip)

    if allowed:
        assert response.status_code == 200
    else:
        assert response.status_code == 403
        assert error_code(response) == "IP_NOT_ALLOWED"


def test_an_empty_allowlist_allows_any_ip(project):
    _api_key, plaintext = make_key(KeyKind.SECRET, project=project)

    assert analyses(plaintext, project, "192.0.2.1").status_code == 200


@override_settings(NUM_PROXIES=1)
def test_the_client_ip_comes_from_the_trusted_proxy(project):
    _api_key, plaintext = make_key(KeyKind.SECRET, project=project, allowed_ips=ALLOWED)

    inside = analyses(plaintext, project, "10.0.0.2", HTTP_X_FORWARDED_FOR="203.0.113.50")
    outside = analyses(plaintext, project, "203.0.113.1", HTTP_X_FORWARDED_FOR="198.51.100.1")
    # The client's own claim further left is ignored.
    spoofed = analyses(
        plaintext, project, "10.0.0.2", HTTP_X_FORWARDED_FOR="203.0.113.50, 198.51.100.1"
    )

    assert inside.status_code == 200
    assert error_code(outside) == error_code(spoofed) == "IP_NOT_ALLOWED"


@pytest.mark.parametrize("remote", ["", "unix:/run/gunicorn.sock", "not-an-ip"])
def test_without_a_client_ip_an_ip_bound_key_is_refused(project, remote):
    """A server on a Unix socket, or behind a proxy that sends no address: never let through."""
    _api_key, plaintext = make_key(KeyKind.SECRET, project=project, allowed_ips=ALLOWED)

    response = analyses(plaintext, project, remote)

    assert response.status_code == 403 and error_code(response) == "IP_NOT_ALLOWED"


def test_an_allowlist_change_applies_to_the_next_request(owner, project):
    api_key, plaintext = make_key(KeyKind.SECRET, project=project, allowed_ips=ALLOWED)
    assert analyses(plaintext, project, "198.51.100.7").status_code == 403

    update_key(actor=owner, api_key=api_key, changes={"allowedIps": ["198.51.100.0/24"]})

    assert analyses(plaintext, project, "198.51.100.7").status_code == 200
    assert analyses(plaintext, project, "203.0.113.9").status_code == 403


def test_the_allowlist_also_guards_endpoints_outside_projects(project):
    _api_key, plaintext = make_key(KeyKind.SECRET, project=project, allowed_ips=ALLOWED)

    response = bearer_client(plaintext).get("/v1/me", REMOTE_ADDR="198.51.100.7")

    assert error_code(response) == "IP_NOT_ALLOWED"


# Project lists of org keys


def test_an_org_key_confined_to_one_project_is_refused_on_the_other(owner, project, other_project):
    api_key, plaintext = make_key(
        KeyKind.ORGANIZATION, project=project, project_ids=[str(project.id)]
    )

    assert analyses(plaintext, project).status_code == 200
    refused = analyses(plaintext, other_project)
    assert (refused.status_code, error_code(refused)) == (403, "PROJECT_MISMATCH")

    update_key(actor=owner, api_key=api_key, changes={"projectIds": []})

    assert analyses(plaintext, other_project).status_code == 200


def test_a_confined_org_key_gets_one_answer_for_every_project_outside_its_list(
    project, other_project, outsider
):
    """SPEC §4.10: outside the list is PROJECT_MISMATCH, whether the id is another project
    of the organization, another organization's or no project at all: a confined key
    cannot tell which project ids exist."""
    _api_key, plaintext = make_key(
        KeyKind.ORGANIZATION, project=project, project_ids=[str(project.id)]
    )
    foreign = outsider.memberships.get().organization.projects.get()
    unknown = SimpleNamespace(id=uuid.uuid4())

    answers = {
        (response.status_code, error_code(response), response.json()["error"]["message"])
        for response in (analyses(plaintext, p) for p in (other_project, foreign, unknown))
    }

    assert answers == {
        (
            403,
            "PROJECT_MISMATCH",
            "This organization key is confined to other projects (its projectIds).",
        )
    }  # not "This key belongs to another project", which an org key does not


def test_an_unconfined_org_key_still_needs_a_project_of_its_organization(project, outsider):
    _api_key, plaintext = make_key(KeyKind.ORGANIZATION, project=project)
    foreign = outsider.memberships.get().organization.projects.get()

    response = analyses(plaintext, foreign)

    assert (response.status_code, error_code(response)) == (404, "PROJECT_NOT_FOUND")


# Rate limits


def test_a_rate_limited_key_gets_its_budget_then_429(project):
    _api_key, plaintext = make_key(
        KeyKind.SECRET, project=project, rate_limit={"requests": 3, "perSeconds": 60}
    )

    responses = [analyses(plaintext, project) for _ in range(5)]

    assert [r.status_code for r in responses] == [200, 200, 200, 429, 429]
    assert [r["X-RateLimit-Remaining"] for r in responses] == ["2", "1", "0", "0", "0"]
    assert {r["X-RateLimit-Limit"] for r in responses} == {"3"}
    reset = int(responses[0]["X-RateLimit-Reset"])
    assert 0 < reset - timezone.now().timestamp() <= 61
    refused = responses[-1]
    assert error_code(refused) == "RATE_LIMITED"
    # Whole seconds, rounded up (so at most one more than the window).
    assert 1 <= int(refused["Retry-After"]) <= 60


def test_keys_without_a_limit_carry_no_rate_limit_headers(project):
    _api_key, plaintext = make_key(KeyKind.SECRET, project=project)

    response = analyses(plaintext, project)

    assert response.status_code == 200
    assert "X-RateLimit-Limit" not in response


def test_lifting_and_raising_a_limit_apply_to_the_next_request(owner, project):
    api_key, plaintext = make_key(
        KeyKind.SECRET, project=project, rate_limit={"requests": 1, "perSeconds": 60}
    )
    assert analyses(plaintext, project).status_code == 200
    assert analyses(plaintext, project).status_code == 429

    update_key(
        actor=owner, api_key=api_key, changes={"rateLimit": {"requests": 3, "perSeconds": 60}}
    )
    raised = [analyses(plaintext, project) for _ in range(3)]
    update_key(actor=owner, api_key=api_key, changes={"rateLimit": None})
    lifted = analyses(plaintext, project)

    # The window remembers the request already made: 2 more fit under the new limit of 3.
    assert [r.status_code for r in raised] == [200, 200, 429]
    assert lifted.status_code == 200
    assert "X-RateLimit-Limit" not in lifted


# Order: revoked → expired → origin → IP → project → rate limit → permission


def test_a_revoked_or_expired_key_from_a_foreign_ip_says_revoked_or_expired(owner, project):
    revoked, revoked_key = make_key(KeyKind.SECRET, project=project, allowed_ips=ALLOWED)
    revoke_key(actor=owner, api_key=revoked)
    expired, expired_key = make_key(KeyKind.SECRET, project=project, allowed_ips=ALLOWED)
    ApiKey.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert error_code(analyses(revoked_key, project, "198.51.100.7")) == "KEY_REVOKED"
    assert error_code(analyses(expired_key, project, "198.51.100.7")) == "KEY_EXPIRED"


def test_the_ip_is_checked_before_the_project(project, other_project):
    _api_key, plaintext = make_key(
        KeyKind.ORGANIZATION,
        project=project,
        allowed_ips=ALLOWED,
        project_ids=[str(project.id)],
    )

    assert error_code(analyses(plaintext, other_project, "198.51.100.7")) == "IP_NOT_ALLOWED"


def test_requests_refused_before_the_rate_limit_consume_no_budget(project, other_project):
    _api_key, plaintext = make_key(
        KeyKind.ORGANIZATION,
        project=project,
        allowed_ips=ALLOWED,
        project_ids=[str(project.id)],
        rate_limit={"requests": 2, "perSeconds": 60},
    )

    for _ in range(3):
        assert error_code(analyses(plaintext, project, "198.51.100.7")) == "IP_NOT_ALLOWED"
        assert error_code(analyses(plaintext, other_project)) == "PROJECT_MISMATCH"

    assert [analyses(plaintext, project).status_code for _ in range(3)] == [200, 200, 429]


def test_the_rate_limit_comes_before_the_permission(project):
    _api_key, plaintext = make_key(
        KeyKind.SECRET,
        project=project,
        permissions=["config:read"],
        rate_limit={"requests": 1, "perSeconds": 60},
    )

    first = analyses(plaintext, project)
    second = analyses(plaintext, project)

    assert (first.status_code, error_code(first)) == (403, "PERMISSION_DENIED")
    assert first["X-RateLimit-Remaining"] == "0"
    assert (second.status_code, error_code(second)) == (429, "RATE_LIMITED")


def test_key_management_is_refused_before_the_rate_limit_and_spends_none(project):
    api_key, plaintext = make_key(
        KeyKind.SECRET, project=project, rate_limit={"requests": 1, "perSeconds": 60}
    )
    own_url = f"/v1/projects/{project.id}/api-keys/{api_key.id}"
    client = bearer_client(plaintext)

    for _ in range(3):
        refused = client.patch(own_url, {"rateLimit": None}, format="json")
        assert (refused.status_code, error_code(refused)) == (403, "KEY_MANAGEMENT_FORBIDDEN")
    assert [analyses(plaintext, project).status_code for _ in range(2)] == [200, 429]
    after = client.patch(own_url, {"rateLimit": None}, format="json")

    assert error_code(after) == "KEY_MANAGEMENT_FORBIDDEN"
    api_key.refresh_from_db()
    assert api_key.rate_limit_requests == 1


@pytest.mark.parametrize("redis", [False, True], ids=["per process", "redis"])
def test_a_method_the_endpoint_lacks_is_405_and_spends_no_budget(project, settings, redis):
    if redis and not settings.REDIS_URL:
        pytest.skip("needs REDIS_URL")
    if not redis:
        settings.REDIS_URL = ""
    _api_key, plaintext = make_key(
        KeyKind.SECRET, project=project, rate_limit={"requests": 2, "perSeconds": 60}
    )
    client = bearer_client(plaintext)

    for _ in range(3):
        refused = client.put("/v1/analyses", {}, format="json", HTTP_X_PROJECT_ID=str(project.id))
        assert (refused.status_code, error_code(refused)) == (405, "METHOD_NOT_ALLOWED")
        assert refused["X-RateLimit-Remaining"] == "2"

    assert [analyses(plaintext, project).status_code for _ in range(3)] == [200, 200, 429]
