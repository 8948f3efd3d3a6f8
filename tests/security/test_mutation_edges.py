"""Edges of the credential checks that no test held: an account deactivated behind the
service's back, a key at its exact expiry, a legacy key at the exact sunset, and a key
asked about another tenant's project."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from apps.accounts.models import AuthSession, User
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from apps.apikeys.selectors import key_by_digest
from apps.orgs.access import has_permission
from apps.projects.selectors import project_by_id
from core.permissions import Permission
from core.principal import Principal
from tests.conftest import LEGACY_DEPRECATED_AT, LEGACY_SUNSET_AT, access_token_for
from tests.factories import OrganizationFactory, ProjectFactory, make_key, make_legacy_key
from tests.orgs.helpers import bearer_client, error_code

pytestmark = pytest.mark.django_db

#: A moment to pin the clock to (no ticking), and the instant just before it.
EXPIRY = datetime(2031, 3, 4, 5, 6, 7, tzinfo=UTC)
JUST_BEFORE = timedelta(milliseconds=1)


def assert_refused_from_the_instant(time_machine, key: str, instant, code: str) -> None:
    """The key works a millisecond before `instant` and gets `code` at it (clock pinned)."""
    client = bearer_client(key)
    time_machine.move_to(instant - JUST_BEFORE, tick=False)
    before = client.get("/v1/me")
    time_machine.move_to(instant, tick=False)
    at = client.get("/v1/me")

    assert before.status_code == 200, before.content
    assert at.status_code == 401
    assert error_code(at) == code


def test_an_account_deactivated_in_the_database_alone_ends_its_access_tokens(owner):
    """Found by a mutation audit: `session_is_valid` without its `user.is_active` went
    unnoticed, since every test deactivates through `deactivate_user`, which also ends the
    account's sessions. An account switched off any other way (a data fix, a bulk update,
    an admin action that skips the service) would keep working with its access tokens
    until they expired. The flag is read on every request: the next one is TOKEN_INVALID."""
    client = bearer_client(access_token_for(owner))
    assert client.get("/v1/me").status_code == 200

    User.objects.filter(pk=owner.pk).update(is_active=False)  # not deactivate_user
    response = client.get("/v1/me")

    assert AuthSession.objects.filter(user=owner, ended_at__isnull=True).exists()
    assert response.status_code == 401
    assert error_code(response) == "TOKEN_INVALID"


def test_a_session_is_over_from_the_exact_moment_of_its_cap(owner, time_machine):
    """Found by a mutation audit: `session_is_valid` with `>=` for `>` went unnoticed. An
    access token never outlives its session's cap (its `exp` is the cap at most, and PyJWT
    refuses it from that second), so only a cap brought forward behind the token's back
    tells them apart: the session is over from its cap's instant, whatever the token says."""
    time_machine.move_to(EXPIRY - timedelta(hours=2), tick=False)
    token = access_token_for(owner)
    AuthSession.objects.filter(user=owner, ended_at__isnull=True).update(expires_at=EXPIRY)

    assert_refused_from_the_instant(time_machine, token, EXPIRY, "TOKEN_INVALID")


def test_a_key_is_expired_from_the_exact_moment_of_its_expiry(project, time_machine):
    """Found by a mutation audit: the expiry check `expires_at <= now` weakened to
    `expires_at < now` went unnoticed, since the tests expire keys a second in the past on
    a ticking clock. A key would then still work at the very instant set as its end (its
    `expiresAt`: a roll's grace ends there). With the clock pinned to that instant, it is
    refused KEY_EXPIRED; a millisecond before, it works."""
    time_machine.move_to(EXPIRY - timedelta(days=1), tick=False)
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)
    ApiKey.objects.filter(pk=api_key.pk).update(expires_at=EXPIRY)
    assert_refused_from_the_instant(time_machine, plaintext, EXPIRY, "KEY_EXPIRED")


def test_a_legacy_key_is_deprecated_from_the_exact_moment_of_the_sunset(
    project, settings, time_machine
):
    """Found by a mutation audit: the sunset check `now >= LEGACY_KEYS_SUNSET_AT` weakened
    to `now > LEGACY_KEYS_SUNSET_AT` went unnoticed, since the test of the exact moment
    runs on a ticking clock that has always passed it by the request. Legacy keys would
    then still authenticate at the configured instant of their end. With the clock pinned
    to it, a legacy key is KEY_FORMAT_DEPRECATED; a millisecond before, it works."""
    settings.LEGACY_KEYS_DEPRECATED_AT = LEGACY_DEPRECATED_AT
    settings.LEGACY_KEYS_SUNSET_AT = LEGACY_SUNSET_AT
    time_machine.move_to(LEGACY_SUNSET_AT - timedelta(days=1), tick=False)
    _api_key, plaintext = make_legacy_key(project)
    assert_refused_from_the_instant(
        time_machine, plaintext, LEGACY_SUNSET_AT, "KEY_FORMAT_DEPRECATED"
    )


@pytest.mark.parametrize("kind", [KeyKind.ORGANIZATION, KeyKind.SECRET])
def test_a_key_has_no_permission_on_another_organizations_project(kind, project, other_project):
    """Found by a mutation audit: `has_permission` without its checks of the key's
    organization and project went unnoticed, since the request paths resolve the project
    through the key first. Any caller that hands it a project record it read otherwise (a
    project id from a header, a path or a body) would let a key with the permission act on
    every tenant's projects. A key of this organization, with every permission, has none
    on another organization's project, and a project key none on its sibling project."""
    api_key, _plaintext = make_key(kind, project=project)
    principal = Principal(key=key_by_digest(api_key.digest))
    theirs = project_by_id(ProjectFactory(organization=OrganizationFactory()).id)
    ours = project_by_id(project.id)

    assert has_permission(principal, ours, Permission.ANALYSIS_READ)
    assert not has_permission(principal, theirs, Permission.ANALYSIS_READ)
    assert not has_permission(principal, theirs, Permission.ANALYSIS_CREATE)
    sibling = has_permission(principal, project_by_id(other_project.id), Permission.ANALYSIS_READ)
    assert sibling is (kind is KeyKind.ORGANIZATION)
