"""The reset link's token leaves the address bar (apps.accounts.reset_link): the emailed
`/reset/<token>/` keeps it in a sealed cookie of the reset pages and redirects to
`/reset/set-password/`, as Django's `PasswordResetConfirmView` does with its session."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
import time_machine
from django.conf import settings
from django.test import Client, override_settings
from django.utils import timezone

from apps.accounts.password_reset import make_reset_token
from apps.accounts.reset_link import RESET_COOKIE, SET_PASSWORD_PATH
from core.sealed import seal
from tests.factories import PASSWORD, UserFactory
from tests.pages import html, logged_in

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a-brand-new-passphrase-2026"


def open_link(client: Client, token: str, **extra):
    return client.get(f"/reset/{token}/", **extra)


def keeps_nothing(response) -> bool:
    """No reset cookie set: none at all, or one this answer deletes (a stale one's)."""
    kept = response.cookies.get(RESET_COOKIE)
    return kept is None or (kept.value == "" and kept["max-age"] == 0)


def test_a_good_link_keeps_its_token_in_a_cookie_and_leaves_the_address_bar(owner):
    client = Client()
    token = make_reset_token(owner)

    opened = open_link(client, token)

    assert opened.status_code == 302 and opened["Location"] == SET_PASSWORD_PATH
    assert token not in opened["Location"]
    cookie = opened.cookies[RESET_COOKIE]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert cookie["path"] == "/reset/"
    assert not cookie["secure"]  # plain HTTP, HTTPS_ONLY off (the tests' settings)
    assert settings.PASSWORD_RESET_TIMEOUT - 60 < cookie["max-age"] <= 3600
    # sealed: not the token, nor anything that shows it
    assert token not in cookie.value and token.split(".")[1] not in cookie.value

    page = client.get(SET_PASSWORD_PATH)
    assert page.status_code == 200 and "Choose a new password" in html(page)
    body = html(page)
    assert token not in body and token.split(".")[1] not in body
    assert cookie.value not in body
    assert 'action="' not in body.split('<form method="post"')[1].split(">")[0]


def test_the_cookie_is_secure_over_https(owner, settings):
    opened = open_link(Client(), make_reset_token(owner), secure=True)
    assert opened.cookies[RESET_COOKIE]["secure"] is True
    settings.HTTPS_ONLY = True  # behind a proxy that ends TLS, as production runs
    opened = open_link(Client(), make_reset_token(owner))
    assert opened.cookies[RESET_COOKIE]["secure"] is True


def test_a_cookie_that_outlives_its_token_opens_only_the_invalid_page(owner):
    made = timezone.now()
    client = Client()
    with time_machine.travel(made, tick=False):
        opened = open_link(client, make_reset_token(owner))
        assert opened.status_code == 302
    with time_machine.travel(made + timedelta(minutes=61), tick=False):
        page = client.get(SET_PASSWORD_PATH)
        refused = client.post(SET_PASSWORD_PATH, {"password": NEW_PASSWORD})
    assert page.status_code == 400 and "Choose a new password" not in html(page)
    assert page.cookies[RESET_COOKIE].value == ""  # dropped
    assert refused.status_code == 400
    owner.refresh_from_db()
    assert owner.check_password(PASSWORD)


def test_setting_the_password_ends_every_session_and_drops_the_cookie(owner):
    dashboard = logged_in(owner)
    assert dashboard.get("/").status_code == 200
    client = Client()
    token = make_reset_token(owner)
    open_link(client, token)

    weak = client.post(SET_PASSWORD_PATH, {"password": "short"})
    assert weak.status_code == 200 and 'id="id_password_error"' in html(weak)
    owner.refresh_from_db()
    assert owner.check_password(PASSWORD)

    done = client.post(SET_PASSWORD_PATH, {"password": NEW_PASSWORD})

    assert done.status_code == 302 and done["Location"] == "/login/"
    owner.refresh_from_db()
    assert owner.check_password(NEW_PASSWORD)
    assert dashboard.get("/")["Location"].startswith("/login/")
    dropped = done.cookies[RESET_COOKIE]
    assert dropped.value == "" and dropped["max-age"] == 0 and dropped["path"] == "/reset/"
    assert "Your password was changed" in html(client.get("/login/"))


def test_a_used_link_and_its_old_cookie_are_refused(owner):
    client = Client()
    token = make_reset_token(owner)
    open_link(client, token)
    kept = client.cookies[RESET_COOKIE].value
    assert client.post(SET_PASSWORD_PATH, {"password": NEW_PASSWORD}).status_code == 302

    again = open_link(Client(), token)
    assert again.status_code == 400 and "This link no longer works" in html(again)
    assert keeps_nothing(again)  # nothing kept for a bad link

    replay = Client()
    replay.cookies[RESET_COOKIE] = kept
    replay.cookies[RESET_COOKIE]["path"] = "/reset/"
    refused = replay.post(SET_PASSWORD_PATH, {"password": "yet-another-passphrase-9"})
    assert refused.status_code == 400 and "This link no longer works" in html(refused)
    assert refused.cookies[RESET_COOKIE].value == ""  # the bad cookie goes
    owner.refresh_from_db()
    assert owner.check_password(NEW_PASSWORD)


def test_a_bad_or_expired_link_keeps_nothing(owner):
    bad = open_link(Client(), f"{make_reset_token(owner)}x")
    assert bad.status_code == 400 and keeps_nothing(bad)
    token = make_reset_token(owner)
    with override_settings(PASSWORD_RESET_TIMEOUT=-1):  # every token is older than this
        expired = open_link(Client(), token)
    assert expired.status_code == 400 and keeps_nothing(expired)


def test_the_set_password_page_without_a_cookie_is_the_invalid_page(owner):
    client = Client()
    assert client.get(SET_PASSWORD_PATH).status_code == 400
    refused = client.post(SET_PASSWORD_PATH, {"password": NEW_PASSWORD})
    assert refused.status_code == 400 and "This link no longer works" in html(refused)
    owner.refresh_from_db()
    assert owner.check_password(PASSWORD)


@pytest.mark.parametrize(
    "forged",
    [
        pytest.param(
            lambda token, kept: kept[:-4] + ("AAAA" if kept[-4:] != "AAAA" else "BBBB"),
            id="altered",
        ),
        pytest.param(lambda token, kept: token, id="the bare token"),
        pytest.param(
            lambda token, kept: seal(b"sigsentry.accounts.totp", token),
            id="sealed for another purpose",
        ),
        pytest.param(lambda token, kept: "x" * 5000, id="oversized"),
    ],
)
def test_a_forged_cookie_is_refused(owner, forged):
    token = make_reset_token(owner)
    opened = open_link(Client(), token)
    client = Client()
    client.cookies[RESET_COOKIE] = forged(token, opened.cookies[RESET_COOKIE].value)

    refused = client.post(SET_PASSWORD_PATH, {"password": NEW_PASSWORD})

    assert refused.status_code == 400 and "This link no longer works" in html(refused)
    owner.refresh_from_db()
    assert owner.check_password(PASSWORD)


def test_an_outsiders_cookie_resets_only_the_outsiders_account(owner):
    outsider = UserFactory(email="outsider@example.com")
    client = Client()
    open_link(client, make_reset_token(outsider))
    # the owner's link opened by the owner elsewhere changes nothing for the outsider's cookie
    open_link(Client(), make_reset_token(owner))

    assert client.post(SET_PASSWORD_PATH, {"password": NEW_PASSWORD}).status_code == 302

    owner.refresh_from_db()
    outsider.refresh_from_db()
    assert owner.check_password(PASSWORD) and not owner.check_password(NEW_PASSWORD)
    assert outsider.check_password(NEW_PASSWORD)


def test_the_set_password_form_needs_the_csrf_token(owner):
    client = Client(enforce_csrf_checks=True)
    open_link(client, make_reset_token(owner))
    page = client.get(SET_PASSWORD_PATH)
    assert 'name="csrfmiddlewaretoken"' in html(page)
    assert client.post(SET_PASSWORD_PATH, {"password": NEW_PASSWORD}).status_code == 403
    owner.refresh_from_db()
    assert owner.check_password(PASSWORD)


@override_settings(THROTTLE_RATES=settings.THROTTLE_RATES | {"failed_auth_ip": (2, 300)})
def test_the_set_password_page_checks_the_token_as_the_link_does(owner, throttle_clock):
    client = Client(REMOTE_ADDR="198.51.100.21")
    open_link(client, make_reset_token(owner))
    assert [client.get(SET_PASSWORD_PATH).status_code for _ in range(5)] == [200] * 5
    # a cookie whose token went bad since counts as a failed check, as a bad link does
    owner.set_password("changed-elsewhere-passphrase-1")
    owner.save()
    assert client.get(SET_PASSWORD_PATH).status_code == 400  # counted, and the cookie goes
    assert client.get(f"/reset/{owner.pk}-bad/").status_code == 400
    limited = client.get(f"/reset/{make_reset_token(owner)}/")
    assert limited.status_code == 429


def test_the_logs_name_the_pages_and_never_the_token_or_the_cookie(owner, caplog):
    caplog.set_level(logging.DEBUG)
    client = Client()
    token = make_reset_token(owner)
    kept = open_link(client, token).cookies[RESET_COOKIE].value
    client.get(SET_PASSWORD_PATH)
    client.post(SET_PASSWORD_PATH, {"password": NEW_PASSWORD})

    routes = [getattr(r, "route", None) for r in caplog.records if r.name == "sigsentry.access"]
    assert routes == ["/reset/<str:token>/", SET_PASSWORD_PATH, SET_PASSWORD_PATH]
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert token not in text and token.split(".")[1] not in text and kept not in text


def test_the_link_of_a_page_served_before_the_change_still_posts(owner):
    """A page the release before served posts its form to the link's own URL (a deploy)."""
    done = Client().post(f"/reset/{make_reset_token(owner)}/", {"password": NEW_PASSWORD})
    assert done.status_code == 302 and done["Location"] == "/login/"
    owner.refresh_from_db()
    assert owner.check_password(NEW_PASSWORD)
