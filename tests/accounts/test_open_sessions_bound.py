"""A user keeps at most MAX_OPEN_SESSIONS_PER_USER open sessions (a bounds audit: a script
that logs in on every run left thousands open, each a credential that works for 30 days).
A log-in past them is never refused (a runaway script would lock its person out): it ends
the session seen least recently; log-ins at the same moment wait for each other on the
account's row, so the bound is exact."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.accounts import services as account_services
from apps.accounts.models import AuthSession
from tests.orgs.helpers import bearer_client
from tests.races import race_for_the_last_place

MAX_SESSIONS = account_services.MAX_OPEN_SESSIONS_PER_USER


def open_sessions(user):
    return AuthSession.objects.filter(user=user, ended_at__isnull=True)


@pytest.mark.django_db
def test_a_log_in_past_the_sessions_bound_ends_the_least_recently_seen(outsider):
    pairs = [account_services.start_session(outsider) for _ in range(MAX_SESSIONS)]
    now = timezone.now()
    for n, session in enumerate(open_sessions(outsider).order_by("created_at")):
        # the first log-in seen most recently, the second least
        seen = now if n == 0 else now - timedelta(hours=n)
        AuthSession.objects.filter(id=session.id).update(last_seen_at=seen)
    least_recent = open_sessions(outsider).order_by("last_seen_at").first()

    newest = account_services.start_session(outsider)

    assert open_sessions(outsider).count() == MAX_SESSIONS
    least_recent.refresh_from_db()
    assert least_recent.end_reason == AuthSession.EndReason.SESSION_LIMIT
    assert bearer_client(newest.access).get("/v1/me").status_code == 200
    assert bearer_client(pairs[0].access).get("/v1/me").status_code == 200
    ended = [p for p in pairs if bearer_client(p.access).get("/v1/me").status_code == 401]
    assert len(ended) == 1


@pytest.mark.django_db
def test_sessions_up_to_the_bound_all_stay_open(outsider):
    pairs = [account_services.start_session(outsider) for _ in range(MAX_SESSIONS)]
    assert open_sessions(outsider).count() == MAX_SESSIONS
    assert bearer_client(pairs[0].access).get("/v1/me").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_two_log_ins_at_the_bound_leave_it_exact(outsider):
    for _ in range(MAX_SESSIONS - 1):
        account_services.start_session(outsider)

    def log_in():
        return account_services.start_session(outsider)

    race_for_the_last_place(log_in, log_in, held_after='INSERT INTO "accounts_authsession"')

    assert open_sessions(outsider).count() == MAX_SESSIONS
