"""What a badge or a short label leaves out is in the page as text, not only in a `title`.

An accessibility audit (WCAG 1.3.1, 2.1.1): a title is a mouse's tooltip, not read by
every screen reader nor reached by keyboard. The key rows' guardrail badges ("IPs: x +2",
"Projects: X +1", "Outlives policy"), the members page's "Deactivated" and "Email not
confirmed", and the sessions' full user agent had their details in titles only.
"""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from apps.accounts.services import deactivate_user
from apps.apikeys.keyformat import KeyKind
from apps.orgs.models import Organization
from core.permissions import Role
from tests.factories import MembershipFactory, UserFactory, make_key
from tests.pages import assert_no_inline_code, html, logged_in

pytestmark = pytest.mark.django_db

AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


class _Text(HTMLParser):
    """The page's text (what a screen reader reads), without any attribute."""

    def __init__(self):
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def text_of(page: str) -> str:
    parser = _Text()
    parser.feed(page)
    return " ".join("".join(parser.parts).split())


def test_a_key_rows_guardrail_badges_say_all_they_stand_for(owner, project, other_project):
    make_key(
        KeyKind.ORGANIZATION,
        project=project,
        name="Guarded",
        allowed_ips=["203.0.113.0/24", "198.51.100.7/32", "2001:db8::/32"],
        project_ids=[str(project.id), str(other_project.id)],
    )
    Organization.objects.filter(pk=project.organization_id).update(key_max_lifetime_days=30)

    page = html(logged_in(owner).get(f"/orgs/{project.organization_id}/api-keys/"))

    text = text_of(page)
    assert "IPs: 203.0.113.0/24 +2: only from 203.0.113.0/24, 198.51.100.7/32, 2001:db8::/32" in (
        text
    )
    both = (project.name, other_project.name)
    assert any(
        f"Projects: {first} +1: only in {first}, {second}" in text
        for first, second in (both, both[::-1])
    ), text
    assert "Outlives policy: it lives longer than the organization's key lifetime policy" in text
    assert_no_inline_code(page)


def test_the_members_page_says_why_an_account_is_marked(owner, organization):
    deactivated = MembershipFactory(organization=organization, role=Role.MEMBER).user
    deactivate_user(user=deactivated)
    unconfirmed = UserFactory(email="colleague@example.com", email_confirmed_at=None)
    MembershipFactory(organization=organization, user=unconfirmed, role=Role.VIEWER)

    text = text_of(html(logged_in(owner).get(f"/orgs/{organization.id}/members/")))

    assert "Deactivated: this account was deactivated: it cannot log in or act" in text
    assert "Email not confirmed: its owner has not yet shown that this address is theirs" in text


def test_the_sessions_table_has_each_full_user_agent_as_text(owner):
    client = logged_in(owner)
    owner.auth_sessions.update(user_agent=AGENT)

    page = html(client.get("/account/"))

    assert "Firefox on Linux" in text_of(page)
    assert f"(user agent: {AGENT})" in text_of(page)
