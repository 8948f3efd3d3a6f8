"""A misspelled field in a mint, roll or PATCH body is refused, never dropped, and the
refusal says which field it resembles.

A guardrail sent under a near-miss name (`expires_at`, `allowedIPs`, `projectId`) used to
be ignored: the key was minted without it, never expiring or open to any IP, with a 201
that looked like success. Such a body is a VALIDATION_ERROR naming the field sent and the
one it resembles, and nothing is minted or rolled; any other field the body does not take
is refused too ("Unknown field.": every body is closed, `tests/test_closed_bodies.py`).
"""

from __future__ import annotations

import pytest
from django.conf import settings

from apps.apikeys.api import MINT_FIELDS, ROLL_FIELDS
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from apps.apikeys.serializers import MINT_INPUTS, ROLL_INPUTS
from apps.audit.models import AuditEvent
from tests.apikeys.test_guardrails_api import mint
from tests.factories import make_key
from tests.orgs.helpers import error_fields, key_url, user_client

pytestmark = pytest.mark.django_db

LATER = "2999-01-31T12:00:00Z"


@pytest.mark.parametrize(
    ("kind", "sent", "value", "meant"),
    [
        (KeyKind.SECRET, "expires_at", LATER, "expiresAt"),
        (KeyKind.SECRET, "expiresat", LATER, "expiresAt"),
        (KeyKind.SECRET, "expires", LATER, "expiresAt"),
        (KeyKind.SECRET, "allowedIPs", ["203.0.113.0/24"], "allowedIps"),
        (KeyKind.SECRET, "allowed_ips", ["203.0.113.0/24"], "allowedIps"),
        (KeyKind.SECRET, "ips", ["203.0.113.0/24"], "allowedIps"),
        (KeyKind.SECRET, "rate_limit", {"requests": 5, "perSeconds": 60}, "rateLimit"),
        (KeyKind.ORGANIZATION, "projectId", "<project>", "projectIds"),
        (KeyKind.ORGANIZATION, "project_ids", ["<project>"], "projectIds"),
        (KeyKind.PUBLIC, "allowed_origins", ["https://app.example.com"], "allowedOrigins"),
        (KeyKind.PUBLIC, "origins", ["https://app.example.com"], "allowedOrigins"),
    ],
)
def test_a_misspelled_guardrail_mints_nothing(owner, project, kind, sent, value, meant):
    value = str(project.id) if value == "<project>" else value
    value = [str(project.id)] if value == ["<project>"] else value

    response = mint(user_client(owner), kind, project, **{sent: value})

    assert response.status_code == 400
    assert error_fields(response) == {sent: [f"Unknown field: did you mean {meant}?"]}
    assert not ApiKey.objects.exists()
    assert not AuditEvent.objects.filter(action="key.created").exists()


def test_the_same_guardrail_spelled_right_is_taken(owner, project):
    response = mint(user_client(owner), KeyKind.SECRET, project, expiresAt=LATER)

    assert response.status_code == 201
    assert response.json()["expiresAt"] == LATER.replace("Z", ".000000Z")


@pytest.mark.parametrize(
    "extra",
    [{"type": "public"}, {"description": "CI deploys"}, {"scope": "organization"}, {"id": "x"}],
    ids=["type", "description", "scope", "id"],
)
def test_other_unknown_fields_are_refused_and_mint_nothing(owner, project, extra):
    response = mint(user_client(owner), KeyKind.SECRET, project, **extra)

    assert error_fields(response) == {key: ["Unknown field."] for key in extra}
    assert not ApiKey.objects.exists()  # the URL decides the kind, never the body


def test_every_misspelling_is_reported_with_the_other_fields_left_unread(owner, project):
    response = mint(
        user_client(owner), KeyKind.SECRET, project, expires_at=LATER, allowed_ips=["10.0.0.1"]
    )

    assert set(error_fields(response)) == {"expires_at", "allowed_ips"}
    assert not ApiKey.objects.exists()


def test_a_body_of_more_members_than_a_form_may_have_is_refused(owner, project):
    extras = {f"x{n}": n for n in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS)}

    response = mint(user_client(owner), KeyKind.SECRET, project, **extras)

    assert error_fields(response) == {
        "body": [f"At most {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} fields."]
    }
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize("sent", ["expires_at", "grace_seconds", "allowedorigins"])
def test_a_misspelled_roll_field_rolls_nothing(owner, project, sent):
    kind = KeyKind.PUBLIC if sent == "allowedorigins" else KeyKind.SECRET
    api_key, _ = make_key(kind, project=project)
    value = ["https://app.example.com"] if sent == "allowedorigins" else LATER
    body = {"graceSeconds": 60, sent: value}

    response = user_client(owner).post(key_url(kind, project, api_key, "roll"), body, format="json")

    assert response.status_code == 400
    assert sent in error_fields(response)
    assert ApiKey.objects.get() == api_key  # no successor
    api_key.refresh_from_db()
    assert api_key.expires_at is None


@pytest.mark.parametrize(
    ("names", "inputs"),
    [(MINT_FIELDS, MINT_INPUTS), (ROLL_FIELDS, ROLL_INPUTS)],
    ids=["mint", "roll"],
)
def test_the_fields_compared_are_those_the_api_document_gives(names, inputs):
    documented = {name for serializer in inputs.values() for name in serializer().fields}

    assert set(names) == documented


def test_a_misspelled_patch_field_names_the_field_it_resembles(owner, project):
    api_key, _ = make_key(KeyKind.SECRET, project=project)

    response = user_client(owner).patch(
        key_url(KeyKind.SECRET, project, api_key), {"allowed_ips": ["10.0.0.1"]}, format="json"
    )

    assert error_fields(response) == {"allowed_ips": ["Unknown field: did you mean allowedIps?"]}
    api_key.refresh_from_db()
    assert api_key.allowed_ips == []


def test_a_misspelled_policy_field_sets_no_policy(owner, organization):
    response = user_client(owner).patch(
        f"/v1/organizations/{organization.id}", {"key_max_lifetime_days": 30}, format="json"
    )

    assert error_fields(response) == {
        "key_max_lifetime_days": ["Unknown field: did you mean keyMaxLifetimeDays?"]
    }
    organization.refresh_from_db()
    assert organization.key_max_lifetime_days is None
