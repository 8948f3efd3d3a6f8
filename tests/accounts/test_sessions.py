"""Sessions (SPEC §4.13): list and end them (API, /account/), last seen, password change."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth.hashers import MD5PasswordHasher, PBKDF2PasswordHasher, make_password
from django.core import mail as django_mail
from django.db import connection
from django.test import Client
from django.utils import timezone
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from apps.accounts import services, tokens
from apps.accounts.cookies import ACCESS_COOKIE
from apps.accounts.models import AuthSession
from apps.notifications import tasks
from tests.factories import PASSWORD
from tests.orgs.helpers import bearer_client, cookie_client, error_code, with_csrf
from tests.pages import CONFIRMED, assert_no_inline_code, html, logged_in

pytestmark = pytest.mark.django_db

SESSIONS = "/v1/auth/sessions"


def session_of(access: str) -> AuthSession:
    return AuthSession.objects.get(id=tokens.decode(access, "access")["sid"])


def test_the_list_shows_open_sessions_and_marks_the_current_one(owner, member):
    laptop = services.start_session(owner)
    phone = services.start_session(owner)
    ended = services.start_session(owner)
    services.end_own_session(user=owner, session_id=session_of(ended.access).id)
    services.start_session(member)  # someone else's
    client = bearer_client(laptop.access, enforce_csrf_checks=True)

    response = client.get(SESSIONS, HTTP_USER_AGENT="Mozilla/5.0 Firefox/128.0")

    assert response.status_code == 200
    results = response.json()["results"]
    assert {r["id"] for r in results} == {
        str(session_of(laptop.access).id),
        str(session_of(phone.access).id),
    }
    current = [r for r in results if r["current"]]
    assert [r["id"] for r in current] == [str(session_of(laptop.access).id)]
    assert set(results[0]) == {"id", "createdAt", "lastSeenAt", "ip", "userAgent", "current"}
    assert response.json()["next"] is None


def test_ending_a_session_logs_it_out_on_the_next_request(owner):
    mine = services.start_session(owner)
    other = services.start_session(owner)
    other_client = bearer_client(other.access)
    assert other_client.get("/v1/me").status_code == 200

    response = bearer_client(mine.access).post(f"{SESSIONS}/{session_of(other.access).id}/end")

    assert response.status_code == 204
    gone = other_client.get("/v1/me")
    assert gone.status_code == 401 and error_code(gone) == "TOKEN_INVALID"
    refresh = Client().post(
        "/v1/auth/refresh", {"refresh": other.refresh}, content_type="application/json"
    )
    assert refresh.status_code == 401
    assert bearer_client(mine.access).get("/v1/me").status_code == 200


@pytest.mark.parametrize("which", ["another user's", "ended", "unknown", "garbage"])
def test_ending_anything_but_an_own_open_session_is_404(owner, member, which):
    theirs = services.start_session(member)
    done = services.start_session(owner)
    services.end_own_session(user=owner, session_id=session_of(done.access).id)
    target = {
        "another user's": session_of(theirs.access).id,
        "ended": session_of(done.access).id,
        "unknown": uuid.uuid4(),
        "garbage": "not-a-session",
    }[which]
    client = bearer_client(services.start_session(owner).access)

    response = client.post(f"{SESSIONS}/{target}/end")

    assert response.status_code == 404 and error_code(response) == "NOT_FOUND"
    assert bearer_client(theirs.access).get("/v1/me").status_code == 200


def test_a_session_past_its_cap_is_not_listed_and_ending_it_is_404(owner):
    current = services.start_session(owner)
    old_id = session_of(services.start_session(owner).access).id
    AuthSession.objects.filter(id=old_id).update(expires_at=timezone.now() - timedelta(seconds=1))
    client = bearer_client(current.access)

    listed = {row["id"] for row in client.get(SESSIONS).json()["results"]}
    ended = client.post(f"{SESSIONS}/{old_id}/end")

    assert str(old_id) not in listed
    assert ended.status_code == 404


def test_sessions_of_a_password_set_outside_the_services_are_not_listed(owner):
    """Found by a session audit: a password set in a shell (`set_password` and
    `save`) ends no session row, but their tokens stop working (the fingerprint), and
    the list showed them open."""
    before = services.start_session(owner)
    owner.set_password("an-operator-set-passphrase-1")
    owner.save()
    after = services.start_session(owner)
    assert bearer_client(before.access).get("/v1/me").status_code == 401

    listed = bearer_client(after.access).get(SESSIONS).json()["results"]

    assert [row["id"] for row in listed] == [str(session_of(after.access).id)]
    ended = bearer_client(after.access).post(f"{SESSIONS}/{session_of(before.access).id}/end")
    assert ended.status_code == 404


def test_the_cookie_session_needs_the_csrf_token_to_end_a_session(owner):
    other = services.start_session(owner)
    client = cookie_client(owner)
    path = f"{SESSIONS}/{session_of(other.access).id}/end"
    assert client.post(path).status_code == 403
    assert bearer_client(other.access).get("/v1/me").status_code == 200
    assert client.post(path, **with_csrf(client)).status_code == 204


# Last seen -----------------------------------------------------------------------------


def test_touch_writes_at_most_once_a_minute(owner, django_assert_num_queries, rf):
    pair = services.start_session(owner)
    session = session_of(pair.access)
    request = rf.get("/", REMOTE_ADDR="198.51.100.4", HTTP_USER_AGENT="curl/8.5.0")

    with django_assert_num_queries(0):
        services.touch_session(session, request)  # seen at login, a moment ago

    AuthSession.objects.filter(id=session.id).update(
        last_seen_at=timezone.now() - timedelta(minutes=2)
    )
    session.refresh_from_db()
    with django_assert_num_queries(1):
        services.touch_session(session, request)
    with django_assert_num_queries(0):
        services.touch_session(session, request)
    session.refresh_from_db()
    assert timezone.now() - session.last_seen_at < timedelta(seconds=5)
    assert session.ip == "198.51.100.4" and session.user_agent == "curl/8.5.0"


def test_dashboard_pages_record_when_and_where_a_session_was_seen(owner):
    client = logged_in(owner)
    session = AuthSession.objects.get(user=owner)
    AuthSession.objects.filter(id=session.id).update(
        last_seen_at=timezone.now() - timedelta(hours=3), ip=None, user_agent=""
    )
    client.get("/", REMOTE_ADDR="192.0.2.9", HTTP_USER_AGENT="Mozilla/5.0 (X11; Linux) Firefox/1")
    session.refresh_from_db()
    assert timezone.now() - session.last_seen_at < timedelta(seconds=5)
    assert session.ip == "192.0.2.9"
    assert "Firefox" in session.user_agent


# Account page: sessions ---------------------------------------------------------------------


def test_account_page_lists_sessions_with_a_log_out_each(owner, member):
    other = services.start_session(owner)
    services.start_session(member)
    client = logged_in(owner)

    page = html(client.get("/account/", HTTP_USER_AGENT="Mozilla/5.0 (X11; Linux) Chrome/120"))

    assert_no_inline_code(page)
    assert page.count("<tr data-session=") == 2
    assert "This browser" in page
    assert f'action="/account/sessions/{session_of(other.access).id}/end/"' in page
    assert "Log out everywhere else" in page


def test_log_out_on_the_account_page_ends_that_session(owner):
    other = services.start_session(owner)
    client = logged_in(owner)
    response = client.post(f"/account/sessions/{session_of(other.access).id}/end/")
    assert response.status_code == 302
    assert bearer_client(other.access).get("/v1/me").status_code == 401
    assert client.get("/account/").status_code == 200


def test_log_out_of_the_current_session_goes_to_login(owner):
    client = logged_in(owner)
    current = AuthSession.objects.get(user=owner)
    response = client.post(f"/account/sessions/{current.id}/end/")
    assert response.status_code == 302 and response["Location"] == "/login/"
    assert response.cookies[ACCESS_COOKIE].value == ""
    current.refresh_from_db()
    assert current.ended_at is not None


def test_another_users_session_cannot_be_ended_from_the_page(owner, member):
    theirs = services.start_session(member)
    client = logged_in(owner)
    client.post(f"/account/sessions/{session_of(theirs.access).id}/end/")
    assert bearer_client(theirs.access).get("/v1/me").status_code == 200


def test_log_out_everywhere_else_keeps_this_browser(owner, member):
    others = [services.start_session(owner) for _ in range(2)]
    theirs = services.start_session(member)
    client = logged_in(owner)

    response = client.post("/account/sessions/others/end/", CONFIRMED, follow=True)

    assert "Logged out 2 other sessions." in html(response)
    for pair in others:
        assert bearer_client(pair.access).get("/v1/me").status_code == 401
    assert bearer_client(theirs.access).get("/v1/me").status_code == 200
    assert client.get("/account/").status_code == 200


def test_session_forms_need_the_csrf_token(owner):
    other = services.start_session(owner)
    client = logged_in(owner, Client(enforce_csrf_checks=True))
    assert client.post(f"/account/sessions/{session_of(other.access).id}/end/").status_code == 403
    assert client.post("/account/sessions/others/end/", CONFIRMED).status_code == 403
    assert bearer_client(other.access).get("/v1/me").status_code == 200


def test_the_account_page_needs_a_login():
    response = Client().get("/account/")
    assert response.status_code == 302 and response["Location"] == "/login/?next=%2Faccount%2F"


# Account page: password ---------------------------------------------------------------------


def test_changing_the_password_logs_out_other_sessions_and_keeps_this_one(owner):
    other = services.start_session(owner)
    client = logged_in(owner)

    response = client.post(
        "/account/password/",
        {"current_password": PASSWORD, "new_password": "a-much-better-passphrase-7"},
    )

    assert response.status_code == 302 and response["Location"] == "/account/"
    assert response.cookies[ACCESS_COOKIE].value
    owner.refresh_from_db()
    assert owner.check_password("a-much-better-passphrase-7")
    assert bearer_client(other.access).get("/v1/me").status_code == 401
    assert client.get("/account/").status_code == 200
    assert AuthSession.objects.filter(user=owner, ended_at__isnull=True).count() == 1
    assert [m.subject for m in django_mail.outbox] == ["Your SigSentry password was changed"]


def test_a_password_hash_upgraded_at_log_in_keeps_the_other_sessions(api_client, owner):
    """Django re-hashes a right password stored with a hasher it no longer prefers (here
    PBKDF2); the password did not change, so no session ends."""
    owner.password = make_password(PASSWORD, hasher="pbkdf2_sha256")
    owner.save(update_fields=["password"])
    other = services.start_session(owner)

    login = api_client.post(
        "/v1/auth/login", {"email": owner.email, "password": PASSWORD}, format="json"
    )

    assert login.status_code == 200
    owner.refresh_from_db()
    assert not owner.password.startswith("pbkdf2_sha256")  # the preferred hasher now
    assert bearer_client(other.access).get("/v1/me").status_code == 200
    assert bearer_client(login.json()["access"]).get("/v1/me").status_code == 200
    assert AuthSession.objects.filter(user=owner, ended_at__isnull=True).count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_password_is_checked_and_upgraded_outside_any_transaction(owner, monkeypatch):
    """On SQLite a transaction holds the write lock from its start (settings): a log-in's
    Argon2 hashing (~180 ms) inside one made every other write of the demo wait."""
    owner.password = make_password(PASSWORD, hasher="pbkdf2_sha256")
    owner.save(update_fields=["password"])
    hashed_in_a_transaction = []

    def watched(method):
        def run(*args, **kwargs):
            hashed_in_a_transaction.append((method.__name__, connection.in_atomic_block))
            return method(*args, **kwargs)

        return run

    monkeypatch.setattr(PBKDF2PasswordHasher, "verify", watched(PBKDF2PasswordHasher.verify))
    monkeypatch.setattr(MD5PasswordHasher, "encode", watched(MD5PasswordHasher.encode))

    assert owner.check_password(PASSWORD)

    assert hashed_in_a_transaction == [("verify", False), ("encode", False)]
    owner.refresh_from_db()
    assert owner.password.startswith("md5$")  # upgraded to the preferred hasher


def test_a_wrong_password_upgrades_nothing(owner):
    owner.password = make_password(PASSWORD, hasher="pbkdf2_sha256")
    owner.save(update_fields=["password"])
    other = services.start_session(owner)

    assert not owner.check_password("not-the-password")

    owner.refresh_from_db()
    assert owner.password.startswith("pbkdf2_sha256")
    assert bearer_client(other.access).get("/v1/me").status_code == 200


def test_a_wrong_current_password_changes_nothing(owner):
    client = logged_in(owner)
    response = client.post(
        "/account/password/",
        {"current_password": "not-it", "new_password": "a-much-better-passphrase-7"},
    )
    assert response.status_code == 200 and "The password is incorrect." in html(response)
    owner.refresh_from_db()
    assert owner.check_password(PASSWORD)


def test_a_weak_new_password_is_refused_next_to_its_field(owner):
    response = logged_in(owner).post(
        "/account/password/", {"current_password": PASSWORD, "new_password": "short"}
    )
    assert response.status_code == 200 and 'id="id_new_password_error"' in html(response)
    owner.refresh_from_db()
    assert owner.check_password(PASSWORD)


# Retention (the worker's daily housekeeping) -------------------------------------------------


def test_housekeeping_deletes_sessions_90_days_after_they_ended_or_passed_their_cap(
    owner, time_machine
):
    """With the IP and user agent each holds."""
    time_machine.move_to(timezone.now(), tick=False)
    logged_out = session_of(services.start_session(owner).access)
    services.logout(session=logged_out)
    left_open = session_of(services.start_session(owner).access)  # ends by its cap
    retention = services.ENDED_SESSION_RETENTION

    def sessions_after_housekeeping() -> set:
        tasks.housekeeping.call()
        return set(AuthSession.objects.values_list("id", flat=True))

    time_machine.shift(retention - timedelta(hours=1))
    assert sessions_after_housekeeping() == {logged_out.id, left_open.id}

    time_machine.shift(timedelta(hours=2))
    assert sessions_after_housekeeping() == {left_open.id}

    time_machine.shift(settings.JWT_SESSION_MAX_AGE - timedelta(hours=2))
    current = session_of(services.start_session(owner).access)
    assert sessions_after_housekeeping() == {left_open.id, current.id}

    time_machine.shift(timedelta(hours=2))
    assert sessions_after_housekeeping() == {current.id}


def test_housekeeping_deletes_refresh_token_records_once_their_token_expired(owner, time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    first = services.start_session(owner)
    services.refresh(refresh_token=first.refresh)  # the first refresh token is blacklisted
    services.logout(session=session_of(first.access))  # and so is the second
    assert (OutstandingToken.objects.count(), BlacklistedToken.objects.count()) == (2, 2)

    time_machine.shift(settings.JWT_SESSION_MAX_AGE - timedelta(minutes=1))
    later = services.start_session(owner)
    tasks.housekeeping.call()
    assert (OutstandingToken.objects.count(), BlacklistedToken.objects.count()) == (3, 2)

    time_machine.shift(timedelta(minutes=2))
    tasks.housekeeping.call()

    assert list(OutstandingToken.objects.values_list("jti", flat=True)) == [
        tokens.decode(later.refresh, "refresh")["jti"]
    ]
    assert not BlacklistedToken.objects.exists()
    assert bearer_client(later.access).get("/v1/me").status_code == 200
