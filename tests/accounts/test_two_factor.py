"""Two-factor authentication (SPEC §4.13): set-up, logins with a code or recovery code, admin."""

from __future__ import annotations

import hashlib
import time
from datetime import timedelta

import pyotp
import pytest
from django.conf import settings
from django.core import mail as django_mail
from django.test import Client, override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts import mfa_login, twofactor
from apps.accounts.cookies import ACCESS_COOKIE
from apps.accounts.models import AuthSession, RecoveryCode, TotpDevice, User
from apps.accounts.services import change_password
from apps.apikeys.keyformat import KeyKind
from core.errors import ValidationFailed
from tests.factories import PASSWORD, UserFactory, make_key
from tests.orgs.helpers import bearer_client, error_code, error_fields, user_client
from tests.pages import assert_no_inline_code, html, logged_in

pytestmark = pytest.mark.django_db

LOGIN = "/v1/auth/login"
LOGIN_2FA = "/v1/auth/login/2fa"
SETUP = "/v1/auth/2fa/setup"
ENABLE = "/v1/auth/2fa/enable"
DISABLE = "/v1/auth/2fa/disable"


def fresh_step(margin: float = 4.0) -> None:
    """Wait, if needed, so that the next `margin` seconds stay within one 30-second step."""
    into = time.time() % 30
    if into > 30 - margin:
        time.sleep(30 - into + 0.05)


def code_at(secret: str, offset_steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(time.time() + 30 * offset_steps)


def enable_two_factor(user) -> tuple[str, list[str]]:
    """Turn two-factor on through the API; (secret, recovery codes)."""
    client = user_client(user)
    secret = client.post(SETUP).json()["secret"]
    fresh_step()
    codes = client.post(ENABLE, {"code": code_at(secret)}, format="json").json()["recoveryCodes"]
    # Later logins in the same step would be replays of this code: start the tests one step on.
    TotpDevice.objects.filter(user=user).update(last_used_step=None)
    return secret, codes


def password_step(client, user, **extra):
    return client.post(LOGIN, {"email": user.email, "password": PASSWORD}, format="json", **extra)


def mfa_token(client, user) -> str:
    response = password_step(client, user)
    assert response.status_code == 200 and response.json()["mfaRequired"] is True
    return response.json()["mfaToken"]


def second_step(client, token, code, **extra):
    return client.post(LOGIN_2FA, {"mfaToken": token, "code": code}, format="json", **extra)


# Set-up --------------------------------------------------------------------------------


def test_setup_gives_a_secret_and_an_otpauth_url_stored_encrypted(owner):
    response = user_client(owner).post(SETUP)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"secret", "otpauthUrl"}
    assert len(body["secret"]) == 32
    parsed = pyotp.parse_uri(body["otpauthUrl"])
    assert parsed.secret == body["secret"] and parsed.issuer == "SigSentry"
    assert parsed.name == owner.email
    device = TotpDevice.objects.get(user=owner)
    assert device.confirmed_at is None
    assert body["secret"] not in device.encrypted_secret
    assert twofactor.decrypt_secret(device.encrypted_secret) == body["secret"]
    assert not twofactor.is_enabled(owner)


def test_enable_needs_a_right_code_and_answers_ten_recovery_codes_stored_hashed(owner):
    client = user_client(owner)
    secret = client.post(SETUP).json()["secret"]
    wrong = client.post(ENABLE, {"code": "000000"}, format="json")
    assert wrong.status_code == 400 and "code" in error_fields(wrong)
    assert not twofactor.is_enabled(owner)

    fresh_step()
    response = client.post(ENABLE, {"code": code_at(secret)}, format="json")

    assert response.status_code == 200
    codes = response.json()["recoveryCodes"]
    assert len(codes) == len(set(codes)) == 10
    assert twofactor.is_enabled(owner)
    stored = set(RecoveryCode.objects.filter(user=owner).values_list("digest", flat=True))
    assert len(stored) == 10
    for code in codes:
        assert code not in stored
        plain = code.replace("-", "")
        assert hashlib.sha256(plain.encode()).hexdigest() in stored
    assert [m.subject for m in django_mail.outbox] == [
        "Two-factor authentication turned on for your SigSentry account"
    ]
    # found by an email audit: a stolen session turning it on locks the owner out
    [notice] = django_mail.outbox
    html = notice.alternatives[0][0]
    for part in (notice.body, html):
        assert "If this was not you" in part and "turn two-factor authentication off" in part
    assert (
        f"{settings.SITE_URL}/reset/" in notice.body
        and f'href="{settings.SITE_URL}/reset/"' in html
    )


def test_a_set_up_left_unfinished_expires(owner):
    """A first-hour audit: a set-up never finished showed its secret on every later visit to
    the account page, and a code from it turned two-factor on any time after."""
    client = user_client(owner)
    secret = client.post(SETUP).json()["secret"]
    started = timezone.now() - twofactor.SETUP_LIFETIME - timedelta(seconds=1)
    TotpDevice.objects.filter(user=owner).update(created_at=started)

    assert twofactor.pending_setup(owner) is None
    assert secret.lower() not in html(logged_in(owner).get("/account/")).replace(" ", "").lower()
    fresh_step()
    response = client.post(ENABLE, {"code": code_at(secret)}, format="json")
    assert response.status_code == 400
    assert error_fields(response) == {
        "code": ["The set-up expired after 15 minutes. Start it again: it gives a new secret."]
    }
    assert not twofactor.is_enabled(owner)

    again = client.post(SETUP).json()["secret"]  # starting again works, with a new secret
    fresh_step()
    assert client.post(ENABLE, {"code": code_at(again)}, format="json").status_code == 200


def test_the_account_page_says_a_set_up_expired(owner):
    """A review: past its 15 minutes the page had no enable form left, and a code sent from
    it vanished with no word."""
    client = logged_in(owner)
    client.post("/account/2fa/setup/")
    secret = twofactor.pending_setup(owner).secret
    started = timezone.now() - twofactor.SETUP_LIFETIME - timedelta(seconds=1)
    TotpDevice.objects.filter(user=owner).update(created_at=started)
    fresh_step()

    page = html(client.post("/account/2fa/enable/", {"code": code_at(secret)}, follow=True))

    assert "The set-up expired after 15 minutes." in page
    assert "Set up two-factor authentication" in page
    assert not twofactor.is_enabled(owner)


@pytest.mark.parametrize("state", ["never started", "expired", "on"])
def test_enable_tells_its_refusals_apart_from_one_read(owner, state, django_assert_num_queries):
    """A final read: an expired set-up cost three queries to refuse (the set-up, then two
    more to tell "on" from "expired"); the one authenticator row tells all three apart."""
    if state != "never started":
        user_client(owner).post(SETUP)
    if state == "expired":
        started = timezone.now() - twofactor.SETUP_LIFETIME - timedelta(seconds=1)
        TotpDevice.objects.filter(user=owner).update(created_at=started)
    if state == "on":
        TotpDevice.objects.filter(user=owner).update(confirmed_at=timezone.now())
    expected = {
        "never started": "Start the set-up first: POST /v1/auth/2fa/setup.",
        "expired": twofactor.SETUP_EXPIRED,
        "on": "Two-factor authentication is already on.",
    }[state]

    with django_assert_num_queries(1), pytest.raises(ValidationFailed) as refused:
        twofactor.enable(user=owner, code="123456")

    assert refused.value.details["fields"] == {"code": [expected]}


def test_setup_is_refused_while_two_factor_is_on(owner):
    enable_two_factor(owner)
    response = user_client(owner).post(SETUP)
    assert response.status_code == 400
    assert twofactor.is_enabled(owner)


def test_api_keys_have_no_two_factor_or_sessions(project):
    _key, plaintext = make_key(KeyKind.SECRET, project=project)
    client = bearer_client(plaintext)
    for path in (SETUP, ENABLE, DISABLE):
        response = client.post(path, {}, format="json")
        assert response.status_code == 403 and error_code(response) == "PERMISSION_DENIED"
    assert client.get("/v1/auth/sessions").status_code == 403


# Login ---------------------------------------------------------------------------------


def test_login_asks_for_the_code_then_gives_tokens(api_client, owner):
    secret, _codes = enable_two_factor(owner)
    first = password_step(api_client, owner)

    assert first.status_code == 200
    assert set(first.json()) == {"mfaRequired", "mfaToken"}
    assert ACCESS_COOKIE not in first.cookies  # no session before the code
    fresh_step()
    second = second_step(api_client, first.json()["mfaToken"], code_at(secret))

    assert second.status_code == 200 and set(second.json()) == {"access", "refresh"}
    assert second.cookies[ACCESS_COOKIE].value
    assert bearer_client(second.json()["access"]).get("/v1/me").status_code == 200


def test_a_code_is_never_accepted_twice(api_client, owner):
    secret, _codes = enable_two_factor(owner)
    fresh_step()
    code = code_at(secret)
    assert second_step(api_client, mfa_token(api_client, owner), code).status_code == 200

    replay = second_step(api_client, mfa_token(api_client, owner), code)

    assert replay.status_code == 401 and error_code(replay) == "INVALID_CREDENTIALS"


def test_codes_of_the_neighbouring_steps_are_accepted_and_older_ones_are_not(api_client, owner):
    secret, _codes = enable_two_factor(owner)
    fresh_step()
    too_old = second_step(api_client, mfa_token(api_client, owner), code_at(secret, -2))
    assert too_old.status_code == 401
    previous = second_step(api_client, mfa_token(api_client, owner), code_at(secret, -1))
    assert previous.status_code == 200
    TotpDevice.objects.filter(user=owner).update(last_used_step=None)
    too_new = second_step(api_client, mfa_token(api_client, owner), code_at(secret, 2))
    assert too_new.status_code == 401
    following = second_step(api_client, mfa_token(api_client, owner), code_at(secret, 1))
    assert following.status_code == 200
    # After the next step's code, the current step's code is a step back in time: refused.
    late = second_step(api_client, mfa_token(api_client, owner), code_at(secret))
    assert late.status_code == 401


def test_a_recovery_code_logs_in_once(api_client, owner):
    _secret, codes = enable_two_factor(owner)
    token = mfa_token(api_client, owner)
    typed = codes[0].upper().replace("-", " ")  # as a person may type it

    assert second_step(api_client, token, typed).status_code == 200
    again = second_step(api_client, mfa_token(api_client, owner), codes[0])
    assert again.status_code == 401 and error_code(again) == "INVALID_CREDENTIALS"
    assert second_step(api_client, mfa_token(api_client, owner), codes[1]).status_code == 200
    assert twofactor.recovery_codes_left(owner) == 8


def test_each_use_of_a_recovery_code_is_mailed_to_the_owner(api_client, owner, settings):
    """Found by an email audit: a recovery code stands in for the authenticator, and its
    use went unnoticed. A TOTP code or a refused recovery code mails nothing."""
    secret, codes = enable_two_factor(owner)
    django_mail.outbox.clear()

    fresh_step()
    assert second_step(api_client, mfa_token(api_client, owner), code_at(secret)).status_code == 200
    assert (
        second_step(api_client, mfa_token(api_client, owner), "0000-0000-0000-0000").status_code
        == 401
    )
    assert django_mail.outbox == []
    assert second_step(api_client, mfa_token(api_client, owner), codes[0]).status_code == 200

    [notice] = django_mail.outbox
    assert notice.to == [owner.email]
    assert notice.subject == "A recovery code was used to log in to your SigSentry account"
    assert "9 of 10 recovery codes are left" in notice.body
    assert f"{settings.SITE_URL}/reset/" in notice.body and "If this was not you" in notice.body
    assert codes[0] not in notice.body and codes[0] not in notice.alternatives[0][0]


def test_codes_typed_in_full_width_characters_are_read(api_client, owner):
    """As a CJK input method types them (found by a Unicode audit)."""
    secret, codes = enable_two_factor(owner)
    full_width = str.maketrans(
        {c: chr(ord(c) - 0x21 + 0xFF01) for c in "0123456789abcdefghijklmnopqrstuvwxyz-"}
    )
    fresh_step()
    totp = code_at(secret).translate(full_width)
    assert second_step(api_client, mfa_token(api_client, owner), totp).status_code == 200
    recovery = codes[0].translate(full_width)
    assert second_step(api_client, mfa_token(api_client, owner), recovery).status_code == 200
    assert twofactor.recovery_codes_left(owner) == 9


def test_a_recovery_code_of_another_account_does_not_finish_a_login(api_client, owner):
    enable_two_factor(owner)
    _secret, others_codes = enable_two_factor(UserFactory())

    response = second_step(api_client, mfa_token(api_client, owner), others_codes[0])

    assert response.status_code == 401 and error_code(response) == "INVALID_CREDENTIALS"


def test_a_wrong_code_is_invalid_credentials(api_client, owner):
    enable_two_factor(owner)
    token = mfa_token(api_client, owner)
    for code in ("123456", "abcd-efgh-jkmn-pqrs", "x" * 500):
        response = second_step(api_client, token, code)
        assert response.status_code == 401 and error_code(response) == "INVALID_CREDENTIALS"
        assert response.json()["error"]["message"] == twofactor.WRONG_CODE


@override_settings(THROTTLE_RATES=settings.THROTTLE_RATES | {"mfa_account": (3, 300)})
def test_wrong_codes_are_throttled_per_account_even_across_clients(api_client, owner):
    secret, _codes = enable_two_factor(owner)
    token = mfa_token(api_client, owner)
    for n in range(3):
        ip = f"203.0.113.{n}"
        assert second_step(api_client, token, "000000", REMOTE_ADDR=ip).status_code == 401
    fresh_step()
    right = second_step(api_client, token, code_at(secret), REMOTE_ADDR="203.0.113.99")
    assert right.status_code == 429 and error_code(right) == "RATE_LIMITED"
    assert int(right["Retry-After"]) > 0


@override_settings(
    THROTTLE_RATES=settings.THROTTLE_RATES
    | {"mfa_account": (2, 300), "mfa_account_day": (3, 86400)}
)
def test_wrong_codes_are_throttled_per_account_over_a_day_too(api_client, owner, throttle_clock):
    """Found by an audit: 10 wrong codes every 5 minutes, with no daily bound, let someone
    who has the password try 2,880 codes a day (three accepted each time)."""
    secret, _codes = enable_two_factor(owner)
    token = mfa_token(api_client, owner)
    statuses = [second_step(api_client, token, "000000").status_code for _ in range(2)]
    throttle_clock.advance(300)  # a new 5-minute window
    statuses.append(second_step(api_client, token, "000000").status_code)
    fresh_step()

    right = second_step(api_client, token, code_at(secret))

    assert statuses == [401, 401, 401]
    assert right.status_code == 429 and error_code(right) == "RATE_LIMITED"
    assert int(right["Retry-After"]) > 300


@override_settings(
    THROTTLE_RATES=settings.THROTTLE_RATES
    | {"mfa_account": (2, 300), "mfa_account_day": (4, 86400)}
)
def test_codes_refused_by_the_five_minute_limit_do_not_spend_the_days(
    api_client, owner, throttle_clock
):
    """A code refused unchecked (the 5-minute limit) is no guess: it used to count against
    the day's limit all the same, so waiting out the 5 minutes met a day already spent."""
    secret, _codes = enable_two_factor(owner)
    token = mfa_token(api_client, owner)
    wrong = [second_step(api_client, token, "000000").status_code for _ in range(2)]
    refused = [second_step(api_client, token, "000000").status_code for _ in range(3)]
    throttle_clock.advance(300)  # a new 5-minute window, the same day
    fresh_step()

    right = second_step(api_client, token, code_at(secret))

    assert wrong == [401, 401] and refused == [429, 429, 429]
    assert right.status_code == 200, right.content


@override_settings(THROTTLE_RATES=settings.THROTTLE_RATES | {"login_ip": (3, 300)})
def test_wrong_codes_count_against_the_client_too(api_client, owner, throttle_clock):
    """Per client as well as per account: someone holding many accounts' passwords gets no
    more guesses by spreading them."""
    secret, _codes = enable_two_factor(owner)
    token = mfa_token(api_client, owner)  # the password step counts one attempt
    statuses = [second_step(api_client, token, "000000").status_code for _ in range(2)]
    fresh_step()

    right = second_step(api_client, token, code_at(secret))

    assert statuses == [401, 401]
    assert right.status_code == 429 and error_code(right) == "RATE_LIMITED"


@override_settings(THROTTLE_RATES=settings.THROTTLE_RATES | {"login_ip": (2, 300)})
def test_enable_is_refused_from_a_client_past_its_login_limit(api_client, owner, throttle_clock):
    for _ in range(2):
        api_client.post(LOGIN, {"email": owner.email, "password": "wrong-one"}, format="json")
    client = user_client(owner)
    secret = client.post(SETUP).json()["secret"]
    fresh_step()

    response = client.post(ENABLE, {"code": code_at(secret)}, format="json")

    assert response.status_code == 429 and error_code(response) == "RATE_LIMITED"
    assert not twofactor.is_enabled(owner)


def test_an_expired_mfa_token_is_refused(api_client, owner, monkeypatch):
    secret, _codes = enable_two_factor(owner)
    token = mfa_token(api_client, owner)
    monkeypatch.setattr(mfa_login, "MFA_TOKEN_MAX_AGE", timedelta(seconds=-1))
    fresh_step()
    response = second_step(api_client, token, code_at(secret))
    assert response.status_code == 401 and error_code(response) == "INVALID_CREDENTIALS"


def test_the_mfa_token_lives_five_minutes():
    assert timedelta(minutes=5) == mfa_login.MFA_TOKEN_MAX_AGE


@pytest.mark.parametrize(
    "tamper",
    [lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"), lambda t: "x", lambda t: ""],
    ids=["signature", "garbage", "empty"],
)
def test_a_forged_mfa_token_is_refused(api_client, owner, tamper):
    _secret, codes = enable_two_factor(owner)
    response = second_step(api_client, tamper(mfa_token(api_client, owner)), codes[0])
    assert response.status_code in (400, 401)
    assert twofactor.recovery_codes_left(owner) == 10


def test_an_mfa_token_finishes_one_login_only(api_client, owner):
    _secret, codes = enable_two_factor(owner)
    token = mfa_token(api_client, owner)
    assert second_step(api_client, token, codes[0]).status_code == 200
    reused = second_step(api_client, token, codes[1])
    assert reused.status_code == 401
    assert twofactor.recovery_codes_left(owner) == 9  # the second code was not spent


def test_an_mfa_token_of_an_account_deactivated_since_does_not_log_in(api_client, owner):
    secret, _codes = enable_two_factor(owner)
    token = mfa_token(api_client, owner)
    User.objects.filter(pk=owner.pk).update(is_active=False)
    sessions = AuthSession.objects.filter(user=owner).count()
    fresh_step()

    response = second_step(api_client, token, code_at(secret))

    assert response.status_code == 401
    assert AuthSession.objects.filter(user=owner).count() == sessions


def test_a_password_change_kills_outstanding_mfa_tokens(api_client, owner):
    _secret, codes = enable_two_factor(owner)
    token = mfa_token(api_client, owner)
    change_password(user=owner, new_password="a-completely-new-passphrase")
    assert second_step(api_client, token, codes[0]).status_code == 401


def test_a_wrong_password_never_reaches_the_code_step(api_client, owner):
    enable_two_factor(owner)
    response = api_client.post(LOGIN, {"email": owner.email, "password": "nope"}, format="json")
    assert response.status_code == 401 and "mfaToken" not in response.json()


# Disable -------------------------------------------------------------------------------


def test_disable_needs_the_password(owner, api_client):
    enable_two_factor(owner)
    client = user_client(owner)
    wrong = client.post(DISABLE, {"password": "wrong-password"}, format="json")
    assert wrong.status_code == 401 and error_code(wrong) == "INVALID_CREDENTIALS"
    assert twofactor.is_enabled(owner)

    assert client.post(DISABLE, {"password": PASSWORD}, format="json").status_code == 204

    assert not twofactor.is_enabled(owner)
    assert not TotpDevice.objects.filter(user=owner).exists()
    assert not RecoveryCode.objects.filter(user=owner).exists()
    assert set(password_step(api_client, owner).json()) == {"access", "refresh"}


@override_settings(THROTTLE_RATES=settings.THROTTLE_RATES | {"login_account": (2, 300)})
def test_wrong_passwords_to_disable_are_throttled(owner):
    enable_two_factor(owner)
    client = user_client(owner)
    statuses = [
        client.post(DISABLE, {"password": "wrong-password"}, format="json").status_code
        for _ in range(2)
    ]
    throttled = client.post(DISABLE, {"password": PASSWORD}, format="json")
    assert statuses == [401, 401] and throttled.status_code == 429
    assert twofactor.is_enabled(owner)


# Secret at rest ----------------------------------------------------------------------------


def test_the_secret_survives_a_secret_key_rotation(api_client, owner, settings):
    secret, _codes = enable_two_factor(owner)
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret-key-after-rotation-0123456789abcdefghij"
    device = TotpDevice.objects.get(user=owner)
    assert twofactor.decrypt_secret(device.encrypted_secret) == secret
    fresh_step()
    response = second_step(api_client, mfa_token(api_client, owner), code_at(secret))
    assert response.status_code == 200 and set(response.json()) == {"access", "refresh"}


def test_without_its_key_among_the_fallbacks_the_secret_takes_no_code(
    api_client, owner, settings, caplog
):
    secret, codes = enable_two_factor(owner)
    settings.SECRET_KEY = "a-new-secret-key-after-rotation-0123456789abcdefghij"
    fresh_step()
    refused = second_step(api_client, mfa_token(api_client, owner), code_at(secret))
    assert (refused.status_code, error_code(refused)) == (401, "INVALID_CREDENTIALS")
    # an operator hears of it (found by an operator walkthrough: only a 401 said so)
    [line] = [r for r in caplog.records if "two-factor secret unreadable" in r.getMessage()]
    assert line.levelname == "ERROR" and line.user_id == str(owner.pk)
    recovered = second_step(api_client, mfa_token(api_client, owner), codes[0])
    assert recovered.status_code == 200


# Dashboard login ---------------------------------------------------------------------------


def test_dashboard_login_asks_for_the_code_on_a_second_page(owner):
    secret, _codes = enable_two_factor(owner)
    client = Client()
    first = client.post(
        "/login/", {"email": owner.email, "password": PASSWORD, "next": "/account/"}
    )

    assert first.status_code == 200
    assert ACCESS_COOKIE not in first.cookies
    page = html(first)
    assert "Two-factor authentication" in page and 'name="mfa_token"' in page
    assert_no_inline_code(page)
    token = page.split('name="mfa_token" value="')[1].split('"')[0]

    wrong = client.post("/login/2fa/", {"mfa_token": token, "code": "000000", "next": "/account/"})
    assert wrong.status_code == 200 and "The code is not valid." in html(wrong)
    fresh_step()
    done = client.post(
        "/login/2fa/", {"mfa_token": token, "code": code_at(secret), "next": "/account/"}
    )
    assert done.status_code == 302 and done["Location"] == "/account/"
    assert done.cookies[ACCESS_COOKIE].value
    assert client.get("/account/").status_code == 200


def test_a_login_right_after_turning_it_on_says_to_wait_for_the_next_code(owner):
    """Turn it on, log out and in to try it: within the same 30 seconds the app still shows
    the code just used, which is refused once used. "The code is not valid." said the app
    was wrong (found by a first-hour walkthrough); the answer now says what to do, for every
    refused code alike (it tells no used code from a wrong one)."""
    client = user_client(owner)
    secret = client.post(SETUP).json()["secret"]
    fresh_step(margin=8)
    code = code_at(secret)
    assert client.post(ENABLE, {"code": code}, format="json").status_code == 200
    browser = Client()
    page = html(browser.post("/login/", {"email": owner.email, "password": PASSWORD}))
    token = page.split('name="mfa_token" value="')[1].split('"')[0]

    again = browser.post("/login/2fa/", {"mfa_token": token, "code": code})

    assert again.status_code == 200 and ACCESS_COOKIE not in again.cookies
    assert "each code works once: after using one, wait for the next" in html(again)
    api = second_step(APIClient(), mfa_token(APIClient(), owner), "000000")
    assert api.json()["error"]["message"] == twofactor.WRONG_CODE


def test_an_expired_login_on_the_code_page_starts_over(owner):
    _secret, codes = enable_two_factor(owner)
    response = Client().post("/login/2fa/", {"mfa_token": "forged", "code": codes[0]})
    assert response.status_code == 302 and response["Location"] == "/login/"
    assert twofactor.recovery_codes_left(owner) == 10
    # the way back is kept (found by a session audit: a login on the way to an invitation)
    data = {"mfa_token": "forged", "code": codes[0], "next": "/invitations/abc/"}
    response = Client().post("/login/2fa/", data)
    assert response["Location"] == "/login/?next=%2Finvitations%2Fabc%2F"


def test_the_code_page_needs_the_csrf_token(owner):
    _secret, codes = enable_two_factor(owner)
    token = mfa_login.issue_mfa_token(owner)
    client = Client(enforce_csrf_checks=True)
    assert client.post("/login/2fa/", {"mfa_token": token, "code": codes[0]}).status_code == 403
    assert twofactor.recovery_codes_left(owner) == 10


# Admin login -------------------------------------------------------------------------------


@pytest.fixture
def staff(db):
    return UserFactory(is_staff=True, is_superuser=True)


def admin_login(client, user, code=None):
    data = {"username": user.email, "password": PASSWORD, "next": "/admin/"}
    if code is not None:
        data["code"] = code
    return client.post("/admin/login/", data)


def test_admin_login_asks_staff_with_two_factor_for_the_code(staff):
    secret, _codes = enable_two_factor(staff)
    client = Client()
    page = html(client.get("/admin/login/"))
    assert 'name="code"' in page and "Two-factor code" in page

    missing = admin_login(client, staff)
    assert missing.status_code == 200 and "Enter the code of your authenticator app" in html(
        missing
    )
    wrong = admin_login(client, staff, "000000")
    assert wrong.status_code == 200 and "The two-factor code is not valid." in html(wrong)
    assert client.get("/admin/").status_code == 302  # still logged out

    fresh_step()
    assert admin_login(client, staff, code_at(secret)).status_code == 302
    assert client.get("/admin/").status_code == 200


def test_admin_login_accepts_a_recovery_code_once(staff):
    _secret, codes = enable_two_factor(staff)
    assert admin_login(Client(), staff, codes[0]).status_code == 302
    assert admin_login(Client(), staff, codes[0]).status_code == 200


def test_admin_login_without_two_factor_needs_no_code(staff):
    client = Client()
    assert admin_login(client, staff).status_code == 302
    assert client.get("/admin/").status_code == 200


@pytest.mark.parametrize("unsafe", ["//evil.example", "/\\evil.example", "https://evil.example/"])
def test_an_admin_login_with_an_off_site_next_lands_on_the_admin(staff, unsafe):
    """Found by a session audit: Django refused the `next` and fell back to its default
    /accounts/profile/, a 404."""
    data = {"username": staff.email, "password": PASSWORD, "next": unsafe}
    response = Client().post("/admin/login/", data)
    assert response.status_code == 302 and response["Location"] == "/admin/"


@override_settings(THROTTLE_RATES=settings.THROTTLE_RATES | {"mfa_account": (2, 300)})
def test_admin_login_codes_are_throttled_like_the_dashboards(staff):
    secret, _codes = enable_two_factor(staff)
    for _ in range(2):
        admin_login(Client(), staff, "000000")
    fresh_step()
    blocked = admin_login(Client(), staff, code_at(secret))
    assert blocked.status_code == 429 and "Too many attempts" in html(blocked)
    assert int(blocked["Retry-After"]) >= 1


def test_operators_can_turn_two_factor_off_for_a_user(staff, owner):
    enable_two_factor(owner)
    client = Client()
    client.force_login(staff)
    response = client.post(
        "/admin/accounts/user/",
        {"action": "turn_off_two_factor", "_selected_action": [str(owner.pk)]},
    )
    assert response.status_code == 302
    assert not twofactor.is_enabled(owner)
    notices = [m for m in django_mail.outbox if m.to == [owner.email]]
    assert [m.subject for m in notices][-1].startswith("Two-factor authentication turned off")


# Account page ------------------------------------------------------------------------------


def test_account_page_sets_up_two_factor_with_a_qr_code(owner):
    client = logged_in(owner)
    off = html(client.get("/account/"))
    assert "Set up two-factor authentication" in off
    client.post("/account/2fa/setup/")
    page = html(client.get("/account/"))
    assert_no_inline_code(page)
    assert '<svg viewBox="0 0 ' in page and 'class="qr-code"' in page
    setup = twofactor.pending_setup(owner)
    assert setup.grouped_secret in page

    wrong = client.post("/account/2fa/enable/", {"code": "000000"})
    assert wrong.status_code == 200 and not twofactor.is_enabled(owner)
    fresh_step()
    enabled = client.post("/account/2fa/enable/", {"code": code_at(setup.secret)})

    assert enabled.status_code == 200 and twofactor.is_enabled(owner)
    shown = html(enabled)
    assert "These codes will not be shown again." in shown
    assert shown.count("<li><code>") == 10
    assert enabled["Cache-Control"] == "no-store"
    again = html(client.get("/account/"))
    assert "These codes will not be shown again." not in again
    assert "10</strong> of 10 recovery codes left" in again


def test_a_reloaded_enable_says_two_factor_is_already_on_and_shows_no_codes(owner):
    """A reload re-POSTs the code that turned it on: no second codes, and the page says why."""
    client = logged_in(owner)
    client.post("/account/2fa/setup/")
    setup = twofactor.pending_setup(owner)
    fresh_step()
    form = {"code": code_at(setup.secret)}
    first = client.post("/account/2fa/enable/", form)
    assert html(first).count("<li><code>") == 10

    reloaded = client.post("/account/2fa/enable/", form, follow=True)

    assert reloaded.redirect_chain == [("/account/#two-factor", 302)]
    page = html(reloaded)
    assert "Two-factor authentication is already on." in page
    assert "<li><code>" not in page
    assert RecoveryCode.objects.filter(user=owner).count() == 10


def test_account_page_turns_two_factor_off_with_the_password(owner):
    enable_two_factor(owner)
    client = logged_in(owner)
    wrong = client.post("/account/2fa/disable/", {"password": "not-my-password"})
    assert wrong.status_code == 200 and "The password is incorrect." in html(wrong)
    assert twofactor.is_enabled(owner)
    assert client.post("/account/2fa/disable/", {"password": PASSWORD}).status_code == 302
    assert not twofactor.is_enabled(owner)


def test_account_forms_need_the_csrf_token(owner):
    client = logged_in(owner, Client(enforce_csrf_checks=True))
    for path in ("/account/2fa/setup/", "/account/2fa/enable/", "/account/2fa/disable/"):
        assert client.post(path, {"code": "000000", "password": PASSWORD}).status_code == 403
    assert not TotpDevice.objects.filter(user=owner).exists()


def test_two_enables_in_flight_turn_it_on_once_and_keep_the_codes_shown(owner, monkeypatch):
    """Two tabs enable with codes a step apart: the one that commits second is refused, so
    the recovery codes the first showed are the ones that work."""
    client = user_client(owner)
    secret = client.post(SETUP).json()["secret"]
    fresh_step()
    check, shown = twofactor._check_totp, []

    def the_other_tab_finishes_first(device, code, now):
        monkeypatch.setattr(twofactor, "_check_totp", check)
        shown.extend(twofactor.enable(user=owner, code=code_at(secret, -1)))
        return check(device, code, now)

    monkeypatch.setattr(twofactor, "_check_totp", the_other_tab_finishes_first)
    second = client.post(ENABLE, {"code": code_at(secret)}, format="json")

    assert second.status_code == 400
    assert second.json()["error"]["details"]["fields"]["code"] == [
        "Two-factor authentication is already on."
    ]
    stored = set(RecoveryCode.objects.filter(user=owner).values_list("digest", flat=True))
    shown_digests = {hashlib.sha256(code.replace("-", "").encode()).hexdigest() for code in shown}
    assert len(shown) == 10 and stored == shown_digests


@override_settings(THROTTLE_RATES=settings.THROTTLE_RATES | {"mfa_account": (2, 300)})
def test_the_right_code_sent_twice_to_enable_is_not_counted_as_a_guess(
    api_client, owner, monkeypatch
):
    """A retry or a double submit of the enable: the second request checks its code after
    the first used it. Found by a retry audit: told the code was wrong, and counted toward
    the limit a login's codes share."""
    client = user_client(owner)
    secret = client.post(SETUP).json()["secret"]
    fresh_step()
    code, check = code_at(secret), twofactor._check_totp

    def the_first_request_finishes_first(device, sent, now):
        monkeypatch.setattr(twofactor, "_check_totp", check)
        twofactor.enable(user=owner, code=code)
        return check(device, sent, now)

    monkeypatch.setattr(twofactor, "_check_totp", the_first_request_finishes_first)
    second = client.post(ENABLE, {"code": code}, format="json")

    assert second.status_code == 400
    assert error_fields(second)["code"] == ["Two-factor authentication is already on."]
    # Not counted: two failures allowed, and a login's two wrong codes are still checked.
    token = mfa_token(api_client, owner)
    statuses = [second_step(api_client, token, "000000").status_code for _ in range(2)]
    assert statuses == [401, 401]


def test_an_enable_checked_against_a_set_up_started_again_meanwhile_is_refused(owner, monkeypatch):
    """A code checked against the first secret must not confirm the second one, which a
    set-up started again in another tab put in its place: the user never scanned it."""
    client = user_client(owner)
    secret = client.post(SETUP).json()["secret"]
    fresh_step()
    check = twofactor._check_totp

    def another_tab_starts_again(device, code, now):
        monkeypatch.setattr(twofactor, "_check_totp", check)
        twofactor.start_setup(user=owner)
        return check(device, code, now)

    monkeypatch.setattr(twofactor, "_check_totp", another_tab_starts_again)
    response = client.post(ENABLE, {"code": code_at(secret)}, format="json")

    assert response.status_code == 400
    assert "started again" in response.json()["error"]["details"]["fields"]["code"][0]
    assert not twofactor.is_enabled(owner)


def test_a_set_up_started_after_an_enable_committed_leaves_two_factor_on(owner):
    enable_two_factor(owner)

    with pytest.raises(ValidationFailed):
        twofactor.start_setup(user=owner)

    assert twofactor.is_enabled(owner)
    assert TotpDevice.objects.get(user=owner).confirmed_at is not None
