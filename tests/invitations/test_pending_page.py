"""The members page's pending invitations come a page at a time, with their total: an
organization may have thousands pending (50 an hour, each alive 7 days)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.invitations.models import Invitation
from apps.invitations.selectors import token_digest
from tests.factories import MembershipFactory
from tests.pages import html, logged_in

pytestmark = pytest.mark.django_db

PER_PAGE = 50


def pending(organization, inviter, count: int, start: int = 0) -> None:
    now = timezone.now()
    Invitation.objects.bulk_create(
        Invitation(
            organization=organization,
            email=f"waiting{n:04}@example.com",
            normalized_email=f"waiting{n:04}@example.com",
            role="member",
            invited_by=inviter,
            token_digest=token_digest(f"token-{n}"),
            created_at=now - timedelta(minutes=n),
            expires_at=now + timedelta(days=7),
        )
        for n in range(start, start + count)
    )


def rows(page: str) -> list[str]:
    return re.findall(r'<tr data-invitation="([^"]+)">', page)


def test_the_newest_invitations_show_with_the_total_and_a_link_to_the_rest(owner, organization):
    pending(organization, owner, PER_PAGE + 10)
    url = f"/orgs/{organization.id}/members/"
    page = html(logged_in(owner).get(url))
    assert rows(page) == [f"waiting{n:04}@example.com" for n in range(PER_PAGE)]
    assert "60 pending invitations" in page
    assert "?invitations_page=2#pending-heading" in page

    older = html(logged_in(owner).get(url, {"invitations_page": 2}))
    assert rows(older) == [f"waiting{n:04}@example.com" for n in range(50, 60)]
    assert "Page 2 of 2 · 60 total" in older


def test_a_few_invitations_need_no_pages(owner, organization):
    pending(organization, owner, 3)
    page = html(logged_in(owner).get(f"/orgs/{organization.id}/members/"))
    assert len(rows(page)) == 3 and "3 pending invitations" in page
    assert "invitations_page=" not in page


def test_the_members_page_costs_the_same_queries_whatever_the_invitations(owner, organization):
    client = logged_in(owner)
    url = f"/orgs/{organization.id}/members/"
    pending(organization, owner, 2)
    client.get(url)  # warm: the session's last-seen write
    with CaptureQueriesContext(connection) as few:
        few_page = html(client.get(url))
    pending(organization, owner, 200, start=2)
    with CaptureQueriesContext(connection) as many:
        many_page = html(client.get(url))
    assert len(rows(few_page)) == 2 and len(rows(many_page)) == PER_PAGE
    assert len(many.captured_queries) <= len(few.captured_queries) + 1  # + the count


def test_each_lists_links_keep_the_other_lists_page(owner, organization):
    pending(organization, owner, PER_PAGE + 1)
    for _ in range(50):  # 51 members: two pages of them
        MembershipFactory(organization=organization)
    url = f"/orgs/{organization.id}/members/"

    page = html(logged_in(owner).get(url, {"page": 2, "invitations_page": 2}))

    assert 'href="?invitations_page=2&amp;page=1#members-heading"' in page
    assert 'href="?page=2&amp;invitations_page=1#pending-heading"' in page


def test_on_a_phone_each_cell_of_an_invitation_says_what_it_is(owner, organization):
    """Stacked as a card (app.css, .table-stack), a cell is named by its data-label: the
    role's badge stood unnamed, a row above "Invited by", as if it were the address's."""
    pending(organization, owner, 1)
    page = html(logged_in(owner).get(f"/orgs/{organization.id}/members/"))
    row = page.split('<tr data-invitation="waiting0000@example.com">')[1].split("</tr>")[0]
    cells = re.findall(r"<td([^>]*)>", row)
    assert len(cells) == 5
    first, *others, actions = cells
    assert "cell-wide" in first  # the address, the card's title
    assert "cell-actions" in actions
    assert [re.findall(r'data-label="([^"]+)"', cell) for cell in others] == [
        ["Role"],
        ["Invited by"],
        ["Expires"],
    ]
