"""The account page lists this browser and the 20 other sessions seen most recently, with
the total: a script that logs in on every run leaves thousands open for 30 days."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.accounts import services
from apps.accounts.models import AuthSession
from tests.orgs.helpers import bearer_client
from tests.pages import CONFIRMED, html, logged_in

pytestmark = pytest.mark.django_db

OTHERS_SHOWN = 20


def open_others(user, count: int) -> list:
    """`count` other sessions of `user`, the first seen most recently."""
    pairs = [services.start_session(user) for _ in range(count)]
    now = timezone.now()
    for n, session in enumerate(AuthSession.objects.filter(user=user).order_by("created_at")):
        AuthSession.objects.filter(id=session.id).update(last_seen_at=now - timedelta(hours=n))
    return pairs


def listed(page: str) -> list[str]:
    return re.findall(r'<tr data-session="([^"]+)"', page)


def test_this_browser_and_the_20_most_recently_seen_show_with_the_total(owner):
    open_others(owner, 30)
    client = logged_in(owner)
    current = AuthSession.objects.filter(user=owner).latest("created_at")
    others = AuthSession.objects.filter(user=owner).exclude(id=current.id)
    expected = [str(s.id) for s in others.order_by("-last_seen_at")[:OTHERS_SHOWN]]

    page = html(client.get("/account/"))

    assert listed(page) == [str(current.id), *expected]
    assert "31 active" in page
    assert "10 more not listed" in page
    assert "Log out everywhere else" in page
    for session_id in listed(page):
        assert f'action="/account/sessions/{session_id}/end/"' in page


def test_a_few_sessions_are_all_listed_without_a_note(owner):
    open_others(owner, 2)
    page = html(logged_in(owner).get("/account/"))
    assert len(listed(page)) == 3 and "3 active" in page
    assert "more not listed" not in page


def test_log_out_everywhere_else_ends_the_sessions_not_listed_too(owner):
    pairs = open_others(owner, 25)
    client = logged_in(owner)
    response = client.post("/account/sessions/others/end/", CONFIRMED, follow=True)
    assert "Logged out 25 other sessions." in html(response)
    assert all(bearer_client(p.access).get("/v1/me").status_code == 401 for p in pairs)
    page = html(client.get("/account/"))
    assert len(listed(page)) == 1 and "1 active" in page


def test_a_session_not_listed_can_still_be_logged_out_one_by_one(owner):
    pairs = open_others(owner, 25)
    client = logged_in(owner)
    oldest = AuthSession.objects.filter(user=owner).order_by("last_seen_at").first()
    assert str(oldest.id) not in listed(html(client.get("/account/")))
    assert client.post(f"/account/sessions/{oldest.id}/end/").status_code == 302
    oldest.refresh_from_db()
    assert oldest.ended_at is not None
    assert sum(bearer_client(p.access).get("/v1/me").status_code == 200 for p in pairs) == 24


def test_the_page_costs_the_same_queries_whatever_the_sessions(owner):
    client = logged_in(owner)
    open_others(owner, OTHERS_SHOWN)
    client.get("/account/")
    with CaptureQueriesContext(connection) as few:
        client.get("/account/")
    open_others(owner, 40)
    client.get("/account/")
    with CaptureQueriesContext(connection) as many:
        page = html(client.get("/account/"))
    assert len(listed(page)) == OTHERS_SHOWN + 1
    assert len(many.captured_queries) == len(few.captured_queries)
