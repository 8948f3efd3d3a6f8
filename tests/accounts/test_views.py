"""Dashboard sign-up, login, logout, the session cookies and the pages' shared rules."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import OperationalError, connection
from django.test import Client, override_settings
from django.utils import timezone

from apps.accounts import tokens, views
from apps.accounts.cookies import ACCESS_COOKIE, REFRESH_COOKIE
from apps.accounts.models import AuthSession, User
from apps.apikeys.keyformat import KeyKind
from apps.audit.services import Action, record_event
from apps.orgs.models import Membership
from core.errors import RateLimited
from tests.conftest import bearer
from tests.factories import PASSWORD, UserFactory, make_key, make_legacy_key
from tests.pages import assert_no_inline_code, html, logged_in

pytestmark = pytest.mark.django_db

STRONG_PASSWORD = "a-long-and-unusual-passphrase-42"


def label_for(page: str, text: str) -> str:
    """The id of the input labelled exactly `text` (fails when there is no such label)."""
    match = re.search(rf'<label for="([^"]+)">{re.escape(text)}</label>', page)
    assert match, f"no label {text!r}"
    return match.group(1)


def session_cookies_set(response) -> bool:
    return all(
        response.cookies.get(name) is not None and response.cookies[name].value
        for name in (ACCESS_COOKIE, REFRESH_COOKIE)
    )


# Sign-up --------------------------------------------------------------------------


def test_signup_page_has_the_three_labelled_fields_and_button():
    page = html(Client().get("/signup/"))
    for label, name in (
        ("Email", "email"),
        ("Password", "password"),
        ("Organization name", "organization_name"),
    ):
        assert re.search(rf'name="{name}"[^>]*id="{label_for(page, label)}"', page)
    assert ">Sign up</button>" in page
    assert "csrfmiddlewaretoken" in page


def test_signup_creates_the_user_and_organization_and_logs_in_with_httponly_cookies():
    client = Client()
    response = client.post(
        "/signup/",
        {"email": "New@Example.com", "password": STRONG_PASSWORD, "organization_name": "Acme"},
    )
    assert response.status_code == 302 and response["Location"] == "/"
    user = User.objects.get(email="new@example.com")
    membership = Membership.objects.get(user=user)
    assert membership.role == "owner" and membership.organization.name == "Acme"
    assert session_cookies_set(response)
    for name in (ACCESS_COOKIE, REFRESH_COOKIE):
        cookie = response.cookies[name]
        assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/"
    assert response["Cache-Control"] == "no-store"
    home = client.get("/")
    assert home.status_code == 200
    assert "Acme" in html(home) and "new@example.com" in html(home)


def test_signup_errors_are_shown_next_to_their_fields():
    UserFactory(email="taken@example.com")
    response = Client().post(
        "/signup/", {"email": "taken@example.com", "password": "short", "organization_name": ""}
    )
    page = html(response)
    assert response.status_code == 200
    assert 'id="id_password_error">This password is too short.' in page
    assert 'id="id_organization_name_error">An organization name is required.' in page
    assert not session_cookies_set(response)
    response = Client().post(
        "/signup/",
        {"email": "taken@example.com", "password": STRONG_PASSWORD, "organization_name": "X"},
    )
    assert 'id="id_email_error">An account with this email already exists.' in html(response)
    assert not session_cookies_set(response)
    assert User.objects.filter(email="taken@example.com").count() == 1


def test_a_refused_email_and_a_weak_password_are_both_shown_at_once():
    """Found by the keyboard audit: the password's errors came only once the email was
    valid, one more round trip."""
    page = html(
        Client().post(
            "/signup/", {"email": "not-an-email", "password": "short", "organization_name": "X"}
        )
    )
    assert 'id="id_email_error">Enter a valid email address.' in page
    assert 'id="id_password_error">This password is too short.' in page


@pytest.mark.usefixtures("throttle_clock")
@override_settings(THROTTLE_RATES=settings.THROTTLE_RATES | {"signup_ip": (1, 3600)})
def test_signup_throttle_shows_a_friendly_message():
    client = Client()
    client.post(
        "/signup/",
        {"email": "one@example.com", "password": STRONG_PASSWORD, "organization_name": "One"},
    )
    response = Client().post(
        "/signup/",
        {"email": "two@example.com", "password": STRONG_PASSWORD, "organization_name": "Two"},
    )
    assert response.status_code == 200
    assert "Too many attempts. Please wait about" in html(response)
    assert not User.objects.filter(email="two@example.com").exists()


# Login ------------------------------------------------------------------------------


def test_login_page_has_labelled_fields_and_button():
    page = html(Client().get("/login/"))
    assert label_for(page, "Email") and label_for(page, "Password")
    assert ">Log in</button>" in page


def test_login_sets_the_session_cookies_and_goes_home(owner):
    client = Client()
    response = client.post("/login/", {"email": owner.email, "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    assert session_cookies_set(response)
    claims = tokens.decode(response.cookies[ACCESS_COOKIE].value, "access")
    assert claims["sub"] == str(owner.id)
    assert client.get("/").status_code == 200


@pytest.mark.parametrize("email", ["known", "unknown@example.com"])
def test_wrong_password_and_unknown_email_show_the_same_error(owner, email):
    email = owner.email if email == "known" else email
    response = Client().post("/login/", {"email": email, "password": "not-the-password"})
    assert response.status_code == 200
    assert "The email or password is incorrect." in html(response)
    assert not session_cookies_set(response)
    assert not AuthSession.objects.exists()


def test_a_refused_log_in_describes_the_focused_field_with_its_error(owner):
    """Found by a keyboard audit: focus landed on Email, which said nothing of the error a
    screen reader may not announce (a role=alert already there when the page loads). The
    focus is on the emptied password, where the typing goes (a UX review), the email kept."""
    page = html(Client().post("/login/", {"email": owner.email, "password": "not-it"}))

    assert re.search(r'<div class="form-alert" role="alert" id="form-alert">', page)
    password = re.search(r'<input[^>]*name="password"[^>]*>', page).group(0)
    assert "autofocus" in password and 'aria-describedby="form-alert' in password
    assert 'value="' not in password
    email = re.search(r'<input[^>]*name="email"[^>]*>', page).group(0)
    assert "autofocus" not in email and "form-alert" not in email
    assert f'value="{owner.email}"' in email


@pytest.mark.usefixtures("throttle_clock")
@override_settings(THROTTLE_RATES={"login_account": (2, 300), "login_ip": (30, 300)})
def test_login_throttle_shows_a_friendly_message(owner):
    for _ in range(2):
        Client().post("/login/", {"email": owner.email, "password": "wrong-password"})
    response = Client().post("/login/", {"email": owner.email, "password": PASSWORD})
    assert response.status_code == 200
    assert "Too many attempts. Please wait about" in html(response)
    assert not session_cookies_set(response)


def test_login_redirects_to_a_same_site_next(owner, project):
    target = f"/projects/{project.id}/api-keys/?page=2"
    response = Client().post(
        "/login/", {"email": owner.email, "password": PASSWORD, "next": target}
    )
    assert response["Location"] == target


@pytest.mark.parametrize(("target", "lands_on"), [("{project}", "{project}"), ("//evil.com", "/")])
def test_the_login_page_sends_someone_logged_in_on_to_next(owner, project, target, lands_on):
    """A tab that thought its session had ended links to the login page with the page it
    was on: a session that goes on lands there, not on the home page (found by an audit)."""
    path = f"/projects/{project.id}/"
    response = logged_in(owner).get("/login/", {"next": target.format(project=path)})

    assert response.status_code == 302
    assert response["Location"] == lands_on.format(project=path)


def test_logging_in_and_out_each_give_a_new_csrf_token(owner):
    """Found by an audit: a CSRF token planted before the login (a sibling subdomain's
    cookie, a network attacker before HSTS) stayed valid after it and after the logout;
    Django's own `login()` rotates it."""
    client = Client()
    client.get("/login/")
    planted = client.cookies["csrftoken"].value

    client.post("/login/", {"email": owner.email, "password": PASSWORD})
    after_login = client.cookies["csrftoken"].value
    client.post("/logout/")

    assert after_login != planted
    assert client.cookies["csrftoken"].value not in (planted, after_login)


def test_login_form_carries_next_from_the_query_string(project):
    page = html(Client().get(f"/login/?next=/projects/{project.id}/"))
    assert f'name="next" value="/projects/{project.id}/"' in page


@pytest.mark.parametrize(
    "target",
    [
        "//evil.com",
        "https://evil.com",
        "/\\evil.com",
        "\\\\evil.com",
        "http://testserver.evil.com/",
        "javascript:alert(1)",
        "/\t/evil.com",
        "evil.com",
        "///evil.com",
        "",
    ],
)
def test_open_redirect_attempts_go_home(owner, target):
    response = Client().post(
        "/login/", {"email": owner.email, "password": PASSWORD, "next": target}
    )
    assert response.status_code == 302
    assert response["Location"] == "/"


@pytest.mark.parametrize("path", ["/login/", "/signup/"])
def test_logged_in_users_skip_login_and_signup(owner, path):
    response = logged_in(owner).get(path)
    assert response.status_code == 302 and response["Location"] == "/"


# Logout -------------------------------------------------------------------------------


def test_logout_is_post_only(owner):
    client = logged_in(owner)
    assert client.get("/logout/").status_code == 405
    assert client.get("/").status_code == 200


def test_logout_ends_the_session_and_clears_the_cookies(owner, api_client):
    client = logged_in(owner)
    access = client.cookies[ACCESS_COOKIE].value
    response = client.post("/logout/")
    assert response.status_code == 302 and response["Location"] == "/login/"
    for name in (ACCESS_COOKIE, REFRESH_COOKIE):
        assert response.cookies[name].value == ""
        assert response.cookies[name]["max-age"] == 0
    assert AuthSession.objects.get(user=owner).ended_at is not None
    assert api_client.get("/v1/me", **bearer(access)).status_code == 401
    stale = Client()
    stale.cookies[ACCESS_COOKIE] = access
    assert stale.get("/").status_code == 302


def test_logout_lands_on_the_login_page_saying_so_once(owner):
    client = logged_in(owner)

    login = client.post("/logout/", follow=True)

    assert login.redirect_chain == [("/login/", 302)]
    assert '<p class="flash flash-success">You have been logged out.</p>' in html(login)
    assert "You have been logged out." not in html(client.get("/login/"))


def test_logout_after_a_silent_refresh_does_not_write_new_cookies(owner):
    client = logged_in(owner)
    del client.cookies[ACCESS_COOKIE]  # the middleware will rotate the pair first
    response = client.post("/logout/")
    assert response.status_code == 302
    assert response.cookies[ACCESS_COOKIE].value == ""
    assert response.cookies[REFRESH_COOKIE].value == ""
    assert not AuthSession.objects.filter(user=owner, ended_at__isnull=True).exists()


# Session cookies on pages ---------------------------------------------------------------------


def test_anonymous_home_redirects_to_login():
    response = Client().get("/")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=%2F"


def test_an_anonymous_form_post_logs_in_without_a_way_back_to_the_post_only_url(project):
    key, _ = make_key(KeyKind.SECRET, project=project)

    response = Client().post(f"/projects/{project.id}/api-keys/{key.id}/revoke/")

    assert response.status_code == 302 and response["Location"] == "/login/"


def test_a_page_answering_a_form_offers_log_in_again_without_its_action_url(owner, project):
    key, _ = make_key(KeyKind.SECRET, project=project)
    client = logged_in(owner)

    page = html(client.post(f"/projects/{project.id}/api-keys/{key.id}/roll/", {"nonce": "x"}))
    shown = html(client.get(f"/projects/{project.id}/api-keys/"))

    assert 'href="/login/">Log in again' in page
    assert f'href="/login/?next=/projects/{project.id}/api-keys/">Log in again' in shown


def test_missing_access_cookie_is_silently_refreshed(owner):
    client = logged_in(owner)
    del client.cookies[ACCESS_COOKIE]
    old_refresh = client.cookies[REFRESH_COOKIE].value
    response = client.get("/")
    assert response.status_code == 200
    assert session_cookies_set(response)
    assert response.cookies[REFRESH_COOKIE].value != old_refresh


def test_an_outage_right_after_a_silent_refresh_still_sends_the_new_cookies(owner):
    """The rotation commits, then the database fails: the 503 carries the new pair, so the
    next page refreshes with it instead of replaying the old token (which is reuse and
    would end the session)."""
    client = logged_in(owner)
    del client.cookies[ACCESS_COOKIE]
    old_refresh = client.cookies[REFRESH_COOKIE].value
    rotated = []

    def fail_after_the_rotation(execute, sql, params, many, context):
        if rotated and sql.lstrip().startswith("SELECT"):  # the rotation's transaction is over
            raise OperationalError("server closed the connection unexpectedly")
        result = execute(sql, params, many, context)
        if sql.startswith("INSERT") and "outstandingtoken" in sql:  # the new pair, last
            rotated.append(sql)
        return result

    with connection.execute_wrapper(fail_after_the_rotation):
        outage = client.get("/")

    assert outage.status_code == 503
    assert session_cookies_set(outage)
    assert outage.cookies[REFRESH_COOKIE].value != old_refresh
    del client.cookies[ACCESS_COOKIE]
    assert client.get("/").status_code == 200  # the new refresh token works
    assert AuthSession.objects.get().ended_at is None


def refresh_jti_of(refresh_cookie: str) -> str:
    return str(tokens.decode(refresh_cookie, "refresh")["jti"])


def test_a_tab_that_lost_a_refresh_race_gets_the_winners_generation_not_the_login_page(owner):
    """Found by a multi-tab audit: of ten tabs reloaded after the access token expired,
    nine showed the login page (a form posted there was lost) while the session lived."""
    first_tab = logged_in(owner)
    del first_tab.cookies[ACCESS_COOKIE]
    second_tab = Client()
    second_tab.cookies[REFRESH_COOKIE] = first_tab.cookies[REFRESH_COOKIE].value
    assert session_cookies_set(first_tab.get("/"))  # the winner rotates the pair

    loser = second_tab.get("/")

    assert loser.status_code == 200
    session = AuthSession.objects.get()
    assert session.ended_at is None
    assert refresh_jti_of(loser.cookies[REFRESH_COOKIE].value) == session.refresh_jti
    assert refresh_jti_of(first_tab.cookies[REFRESH_COOKIE].value) == session.refresh_jti
    assert first_tab.get("/").status_code == 200


def test_a_rotation_whose_answer_the_browser_dropped_is_healed_by_the_next_request(
    owner, time_machine
):
    """A multi-tab audit: a click rotated the pair, the browser aborted that navigation for
    the next click, kept the old refresh cookie, and 10 s later the reuse ended the session
    as stolen. The next request, within the race window, gets the winner's generation."""
    browser = logged_in(owner)
    old = {REFRESH_COOKIE: browser.cookies[REFRESH_COOKIE].value}
    del browser.cookies[ACCESS_COOKIE]
    assert session_cookies_set(browser.get("/"))  # the answer the browser never read
    browser.cookies[REFRESH_COOKIE] = old[REFRESH_COOKIE]
    del browser.cookies[ACCESS_COOKIE]

    healed = browser.get("/")

    assert healed.status_code == 200 and session_cookies_set(healed)
    time_machine.move_to(timezone.now() + timedelta(seconds=30))
    del browser.cookies[ACCESS_COOKIE]
    assert browser.get("/").status_code == 200  # a rotation from the healed cookie
    assert AuthSession.objects.get().ended_at is None
    # The old token once more, past the window: a reuse, as before.
    thief = Client()
    thief.cookies[REFRESH_COOKIE] = old[REFRESH_COOKIE]
    assert thief.get("/").status_code == 302
    assert AuthSession.objects.get().end_reason == AuthSession.EndReason.REFRESH_REUSED


def test_the_api_still_answers_a_raced_refresh_401(owner):
    """SPEC §2.4: a used refresh token is dead; the window only spares the session."""
    browser = logged_in(owner)
    old_refresh = browser.cookies[REFRESH_COOKIE].value
    del browser.cookies[ACCESS_COOKIE]
    assert session_cookies_set(browser.get("/"))

    raced = Client().post(
        "/v1/auth/refresh", {"refresh": old_refresh}, content_type="application/json"
    )

    assert raced.status_code == 401
    assert AuthSession.objects.get().ended_at is None


def test_dead_session_clears_cookies_and_asks_to_log_in(owner):
    client = logged_in(owner)
    AuthSession.objects.update(ended_at=timezone.now())
    response = client.get("/")
    assert response.status_code == 302
    assert response.cookies[ACCESS_COOKIE].value == ""


def test_pages_expose_the_session_expiry_for_the_refresh_script(owner):
    page = html(logged_in(owner).get("/"))
    expires = re.search(r'data-session-expires-at="([^"]+)"', page).group(1)
    assert expires.startswith(str((timezone.now() + timedelta(hours=24)).year))
    assert 'data-session-lifetime="86400"' in page
    assert "js/session.js" in page


# CSRF -----------------------------------------------------------------------------------


def test_forms_without_the_csrf_token_are_refused(owner):
    client = Client(enforce_csrf_checks=True)
    client.get("/login/")
    response = client.post("/login/", {"email": owner.email, "password": PASSWORD})
    assert response.status_code == 403
    assert not session_cookies_set(response)
    signup = client.post(
        "/signup/",
        {"email": "x@example.com", "password": STRONG_PASSWORD, "organization_name": "X"},
    )
    assert signup.status_code == 403
    assert not User.objects.filter(email="x@example.com").exists()
    session = logged_in(owner, Client(enforce_csrf_checks=True))
    assert session.post("/logout/").status_code == 403
    assert AuthSession.objects.filter(user=owner, ended_at__isnull=True).exists()


def test_login_with_the_csrf_token_works(owner):
    client = Client(enforce_csrf_checks=True)
    page = html(client.get("/login/"))
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    response = client.post(
        "/login/", {"email": owner.email, "password": PASSWORD, "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302


# Every page: no inline code, no caching -----------------------------------------------------------


def test_no_page_has_inline_script_style_or_event_handler(owner, project, outsider):
    make_key(KeyKind.PUBLIC, project=project)
    make_key(KeyKind.ORGANIZATION, organization=project.organization)
    make_legacy_key(
        project, name="legacy", permissions=["analysis:read"], last_used_at=timezone.now()
    )
    record_event(
        action=Action.KEY_MINTED, organization_id=project.organization_id, actor_user=owner
    )
    org = project.organization
    client = logged_in(owner)
    pages = {
        "/": 200,
        f"/projects/{project.id}/": 200,
        f"/projects/{project.id}/sdk-keys/": 200,
        f"/projects/{project.id}/api-keys/": 200,
        f"/orgs/{org.id}/api-keys/": 200,
        f"/orgs/{org.id}/members/": 200,
        f"/orgs/{org.id}/audit-log/": 200,
        f"/orgs/{org.id}/audit-log/?action=key.minted": 200,
        "/no-such-page/": 404,
    }
    for path, status in pages.items():
        response = client.get(path)
        assert response.status_code == status, path
        assert response["Cache-Control"] == "no-store", path
        assert "script-src 'self'" in response["Content-Security-Policy"], path
        assert_no_inline_code(html(response))
    minted = client.post(
        f"/projects/{project.id}/api-keys/",
        {
            "name": "x",
            "permissions": ["analysis:read"],
            "nonce": re.search(
                r'name="nonce" value="([^"]+)"',
                html(client.get(f"/projects/{project.id}/api-keys/")),
            ).group(1),
        },
    )
    assert "data-secret-dialog" in html(minted)
    assert_no_inline_code(html(minted))
    member_only = logged_in(outsider)
    for path in (f"/orgs/{org.id}/members/", f"/projects/{project.id}/"):
        not_found = member_only.get(path)
        assert not_found.status_code == 404
        assert_no_inline_code(html(not_found))
    for path in ("/login/", "/signup/"):
        response = Client().get(path)
        assert response.status_code == 200, path
        assert_no_inline_code(html(response))


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (1, "about 1 minute"),
        (60, "about 1 minute"),
        (61, "about 2 minutes"),
        (89, "about 2 minutes"),
        (299, "about 5 minutes"),
        (3599, "about 1 hour"),
        (3600, "about 1 hour"),
        (86400, "about 24 hours"),
    ],
)
def test_a_throttled_form_says_a_wait_never_shorter_than_the_real_one(seconds, said):
    """ "About 1 minute" for 89 s sent people back too soon, refused again; 3,600 s was
    "about 60 minutes"."""
    message = views.throttled_message(RateLimited(seconds))

    assert message == f"Too many attempts. Please wait {said} and try again."


def test_the_pages_times_for_scripts_are_in_ecmascripts_own_format(owner):
    """Three fractional digits and a Z: ECMAScript's date format, which every engine reads;
    six digits and `+00:00` (Django's `c`) are each engine's own choice."""
    page = html(logged_in(owner).get("/"))

    for name in ("data-session-expires-at", "data-session-ends-at", "data-server-now"):
        value = re.search(rf'{name}="([^"]*)"', page).group(1)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", value), (name, value)


# A form's address opened in the address bar


@pytest.mark.parametrize("path", ["/login/2fa/", "/logout/"])
def test_a_form_address_opened_logged_out_says_what_to_do_not_a_blank_page(path):
    """After a wrong two-factor code the address bar shows /login/2fa/: pressing Enter there,
    or a restored tab, got an empty 405 (found by a first-hour walkthrough)."""
    response = Client().get(path)

    assert response.status_code == 405 and response["Allow"] == "POST"
    page = html(response)
    assert "only receives a form" in page
    assert 'href="/login/"' in page
    assert_no_inline_code(page)


@pytest.mark.parametrize(
    "path", ["/account/email/confirm/", "/account/password/", "/account/2fa/enable/"]
)
def test_a_form_address_opened_logged_in_links_back_to_the_dashboard(owner, path):
    """The account page's forms re-render at their own address when refused (a wrong code,
    a wrong password): opening that address again was an empty page."""
    response = logged_in(owner).get(path)

    assert response.status_code == 405 and response["Allow"] == "POST"
    page = html(response)
    assert "only receives a form" in page and 'href="/"' in page


def test_an_api_405_stays_json(owner):
    response = logged_in(owner).get("/v1/auth/logout")

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
