"""Organization → Audit log page: owners and admins only, newest first, filter by action."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.audit.services import Action, record_event
from tests.pages import assert_no_inline_code, html, logged_in

pytestmark = pytest.mark.django_db


def log_url(organization) -> str:
    return f"/orgs/{organization.id}/audit-log/"


def event(organization, action, minutes_ago, label, **kwargs):
    created = record_event(
        action=action, organization_id=organization.id, target_label=label, **kwargs
    )
    AuditEvent.objects.filter(pk=created.pk).update(
        created_at=timezone.now() - timedelta(minutes=minutes_ago)
    )
    return created


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_managers_see_events_newest_first(request, role, organization, owner):
    event(organization, Action.KEY_MINTED, 30, "older-event", actor_user=owner)
    event(organization, Action.KEY_REVOKED, 5, "newer-event", actor_user=owner)
    response = logged_in(request.getfixturevalue(role)).get(log_url(organization))
    assert response.status_code == 200
    page = html(response)
    assert page.index("newer-event") < page.index("older-event")
    assert owner.email in page
    assert_no_inline_code(page)


def test_events_of_other_organizations_are_not_shown(owner, organization, outsider):
    other = outsider.memberships.get().organization
    event(other, Action.KEY_MINTED, 1, "foreign-event")
    event(organization, Action.KEY_MINTED, 1, "own-event")
    page = html(logged_in(owner).get(log_url(organization)))
    assert "own-event" in page and "foreign-event" not in page


def test_filter_by_action(owner, organization):
    event(organization, Action.KEY_MINTED, 3, "minted-one")
    event(organization, Action.MEMBER_ADDED, 2, "added-one")
    page = html(logged_in(owner).get(log_url(organization) + "?action=member.added"))
    assert "added-one" in page and "minted-one" not in page
    assert '<option value="member.added" selected>' in page


def test_unknown_action_filter_shows_everything(owner, organization):
    event(organization, Action.KEY_MINTED, 3, "minted-one")
    page = html(logged_in(owner).get(log_url(organization) + "?action=<script>"))
    assert "minted-one" in page
    assert "&lt;script&gt;" not in page and "<script>" not in page


def test_log_is_paginated(owner, organization):
    for i in range(55):
        event(organization, Action.KEY_MINTED, i, f"evt-{i:02d}")
    client = logged_in(owner)
    first = html(client.get(log_url(organization)))
    assert "evt-00" in first and "evt-49" in first and "evt-50" not in first
    assert "Page 1 of 2" in first
    second = html(client.get(log_url(organization) + "?page=2"))
    assert "evt-54" in second and "evt-00" not in second


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_members_and_viewers_get_403(request, role, organization):
    event(organization, Action.KEY_MINTED, 1, "secretive")
    response = logged_in(request.getfixturevalue(role)).get(log_url(organization))
    assert response.status_code == 403
    assert "secretive" not in html(response)


def test_outsider_gets_404(outsider, organization):
    event(organization, Action.KEY_MINTED, 1, "secretive")
    response = logged_in(outsider).get(log_url(organization))
    assert response.status_code == 404
    assert "secretive" not in html(response)


def test_times_in_details_read_as_every_time_on_the_pages(owner, organization):
    """A dates audit: `expiresAt 2026-12-07T13:02:23.627068Z` and `None` in the Details."""
    event(
        organization,
        Action.KEY_ROLLED,
        1,
        "rolled-key",
        actor_user=owner,
        details={"expiresAt": "2026-12-07T13:02:23.627068Z", "replacedKeyExpiresAt": None},
    )

    page = html(logged_in(owner).get(log_url(organization)))

    assert '<span class="detail-name">expiresAt</span> 7 Dec 2026, 13:02 UTC' in page
    assert '<span class="detail-name">replacedKeyExpiresAt</span> none' in page
    assert "2026-12-07T13:02" not in page


@pytest.mark.parametrize("name", ["2026-02-30T10:00:00Z", "2026-12-07T13:02:23Z"])
def test_a_key_named_like_a_time_stays_a_name_and_never_breaks_the_log(owner, organization, name):
    """A review: a key named `2026-02-30T10:00:00Z` (an impossible date) made every page of
    its organization's log a 500; a possible one was shown as a date."""
    event(organization, Action.KEY_MINTED, 1, "named-key", actor_user=owner, details={"name": name})
    event(
        organization,
        Action.KEY_UPDATED,
        2,
        "listed",
        actor_user=owner,
        details={"windows": ["2026-12-07T13:02:23Z", "2026-12-08T13:02:23Z"]},
    )

    response = logged_in(owner).get(log_url(organization))

    assert response.status_code == 200
    assert f'<span class="detail-name">name</span> {name}' in html(response)
    assert "2026-12-07T13:02:23Z, 2026-12-08T13:02:23Z" in html(response)
