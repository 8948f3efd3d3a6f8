"""Password reset by email (SPEC §4.13): the API, the pages, and the mail on a real SMTP server."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from apps.accounts.models import AuthSession, RecoveryCode, TotpDevice, User
from apps.accounts.password_reset import confirm_password_reset, make_reset_token
from apps.notifications.tasks import urgent_checks
from core.errors import ValidationFailed
from core.tasks import STALLED_AFTER
from tests.accounts.test_two_factor import enable_two_factor
from tests.factories import PASSWORD, UserFactory
from tests.orgs.helpers import bearer_client, error_code, error_fields
from tests.pages import assert_no_inline_code, html, logged_in
from tests.races import Call, race
from tests.tasks import run_ready_tasks

pytestmark = pytest.mark.django_db

RESET = "/v1/auth/password-reset"
CONFIRM = "/v1/auth/password-reset/confirm"
NEW_PASSWORD = "a-brand-new-passphrase-2026"


def ask_reset(client, email, **extra):
    """The ask, then the worker's part (it mails the link)."""
    answer = client.post(RESET, {"email": email}, format="json", **extra)
    run_ready_tasks()
    return answer


def confirm(client, token, password=NEW_PASSWORD):
    return client.post(CONFIRM, {"token": token, "password": password}, format="json")


def token_from(mail) -> str:
    """The token of the reset link in a received email (its path is /reset/<token>/)."""
    path = urlsplit(mail.link("/reset/")).path
    assert path.startswith("/reset/") and path.endswith("/")
    return path.removeprefix("/reset/").removesuffix("/")


def test_reset_answers_the_same_for_known_and_unknown_emails_and_mails_only_the_known(
    api_client, mailbox, owner
):
    known = ask_reset(api_client, owner.email)
    unknown = ask_reset(api_client, "nobody@example.com")

    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()
    assert mailbox.messages("nobody@example.com") == []
    [mail] = mailbox.messages(owner.email)
    assert mail.subject == "Reset your SigSentry password"
    assert mail.sender == "SigSentry <no-reply@localhost>"
    link = mail.link("/reset/")
    assert link.startswith("http://127.0.0.1:8000/reset/")
    assert link in mail.html  # the HTML part carries the same link


def test_the_reset_email_says_when_its_link_expires_in_utc(
    api_client, mailbox, owner, time_machine
):
    """ "Expires in one hour" read an hour later in another zone says nothing; the moment,
    with its zone, does."""
    time_machine.move_to(datetime(2027, 3, 4, 13, 5, 30, tzinfo=UTC), tick=False)

    ask_reset(api_client, owner.email)

    [mail] = mailbox.messages(owner.email)
    said = "The link works once and expires in one hour, on 4 Mar 2027, 14:05 UTC."
    assert said in mail.text and said in mail.html


def test_a_reset_ask_does_the_same_work_for_known_and_unknown_emails(api_client, mailbox, owner):
    """Everything until the connection closes is the same for both (an audit timed the
    close: the mail, sent by the web process after its answer, held it 10.7 ms against
    3.0 with a local mail server, a second with a slow one); the worker mails the link."""
    asks = []
    for email in (owner.email, "nobody@example.com"):
        with CaptureQueriesContext(connection) as queries:
            answer = api_client.post(RESET, {"email": email}, format="json")
        assert answer.status_code == 202
        asks.append([re.sub(r"'[^']*'", "?", query["sql"]) for query in queries])  # no values

    assert asks[0] == asks[1]
    assert mailbox.messages() == []  # nothing sent by the request
    run_ready_tasks()
    assert [mail.to for mail in mailbox.messages()] == [(owner.email,)]


def test_the_mailed_link_works_once_ends_every_session_and_changes_the_password(
    api_client, mailbox, owner, user_token
):
    old_session = bearer_client(user_token(owner))
    ask_reset(api_client, owner.email)
    token = token_from(mailbox.wait_for(owner.email)[0])
    mailbox.clear()

    page = Client().get(f"/reset/{token}/", follow=True)
    assert page.status_code == 200 and "Choose a new password" in html(page)
    assert page.redirect_chain == [("/reset/set-password/", 302)]
    response = confirm(api_client, token)

    assert response.status_code == 204
    owner.refresh_from_db()
    assert owner.check_password(NEW_PASSWORD)
    assert old_session.get("/v1/me").status_code == 401
    assert not AuthSession.objects.filter(user=owner, ended_at__isnull=True).exists()
    [changed] = mailbox.messages(owner.email)
    assert changed.subject == "Your SigSentry password was changed"
    assert token not in changed.text and token not in changed.html

    again = confirm(api_client, token, "yet-another-passphrase-9")
    assert again.status_code == 400 and "token" in error_fields(again)
    owner.refresh_from_db()
    assert owner.check_password(NEW_PASSWORD)
    assert Client().get(f"/reset/{token}/").status_code == 400


def test_links_live_one_hour():
    assert settings.PASSWORD_RESET_TIMEOUT == 3600


def test_an_expired_token_is_refused_and_changes_nothing(api_client, owner):
    token = make_reset_token(owner)
    with override_settings(PASSWORD_RESET_TIMEOUT=-1):  # every token is older than this
        response = confirm(api_client, token)
    assert response.status_code == 400 and "token" in error_fields(response)
    owner.refresh_from_db()
    assert owner.check_password(PASSWORD)


def test_a_link_of_an_account_deactivated_since_changes_nothing(api_client, owner):
    token = make_reset_token(owner)
    User.objects.filter(pk=owner.pk).update(is_active=False)

    response = confirm(api_client, token)

    assert response.status_code == 400 and "token" in error_fields(response)
    owner.refresh_from_db()
    assert owner.check_password(PASSWORD)


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's row locks")
def test_one_link_used_twice_at_once_sets_one_password(owner):
    """The token is checked again under the user row's lock: the second confirm, waiting
    for the first's commit, finds it spent."""
    token = make_reset_token(owner)
    first = Call(
        lambda: confirm_password_reset(token=token, password="first-Pa55phrase-2026"),
        held_after=lambda sql: sql.startswith("UPDATE") and 'SET "password"' in sql,
    )
    second = Call(lambda: confirm_password_reset(token=token, password="second-Pa55phrase-2026"))

    race(first, second, second_waits=True)

    assert first.error is None
    assert isinstance(second.error, ValidationFailed), second.error
    owner.refresh_from_db()
    assert owner.check_password("first-Pa55phrase-2026")


@pytest.mark.parametrize(
    "tamper",
    [
        lambda token: token[:-1] + ("a" if token[-1] != "a" else "b"),
        lambda token: token.split(".")[0],
        lambda token: "." + token.split(".")[1],
        lambda token: "garbage",
        lambda token: token + "x" * 200,
    ],
    ids=["signature", "no-token", "no-user", "garbage", "too-long"],
)
def test_a_tampered_token_is_refused_and_changes_nothing(api_client, owner, tamper):
    response = confirm(api_client, tamper(make_reset_token(owner)))
    assert response.status_code == 400 and "token" in error_fields(response)
    owner.refresh_from_db()
    assert owner.check_password(PASSWORD)


def test_a_token_cannot_be_moved_to_another_user(api_client, owner, member):
    uid_of_member = make_reset_token(member).split(".")[0]
    signed_for_owner = make_reset_token(owner).split(".")[1]
    response = confirm(api_client, f"{uid_of_member}.{signed_for_owner}")
    assert response.status_code == 400
    member.refresh_from_db()
    assert member.check_password(PASSWORD)


def test_logging_in_ends_a_link_asked_for_before(api_client, owner):
    token = make_reset_token(owner)
    login = api_client.post(
        "/v1/auth/login", {"email": owner.email, "password": PASSWORD}, format="json"
    )
    assert login.status_code == 200
    owner.refresh_from_db()
    assert owner.last_login is not None

    response = confirm(api_client, token)

    assert response.status_code == 400 and "token" in error_fields(response)
    owner.refresh_from_db()
    assert owner.check_password(PASSWORD)


def test_a_weak_password_is_refused_and_the_link_still_works(api_client, owner):
    token = make_reset_token(owner)
    weak = confirm(api_client, token, "password")
    assert weak.status_code == 400 and "password" in error_fields(weak)
    assert confirm(api_client, token).status_code == 204


def test_inactive_users_and_unusable_passwords_get_no_mail(api_client, mailbox):
    inactive = UserFactory(is_active=False)
    no_password = UserFactory()
    no_password.set_unusable_password()
    no_password.save()
    for user in (inactive, no_password):
        assert ask_reset(api_client, user.email).status_code == 202
    assert mailbox.messages() == []


def test_look_alike_spellings_reach_the_account(api_client, mailbox):
    user = UserFactory(email="sam@example.com")
    ask_reset(api_client, "  \uff33AM@EXAMPLE.COM ")  # a full-width S, upper case, spaces
    assert len(mailbox.messages(user.email)) == 1


@override_settings(
    THROTTLE_RATES=settings.THROTTLE_RATES
    | {"password_reset_account": (2, 3600), "password_reset_ip": (1000, 3600)}
)
def test_reset_is_throttled_per_normalized_account(api_client, mailbox, owner):
    spellings = [owner.email, owner.email.upper(), f" {owner.email.title()} "]
    answers = [ask_reset(api_client, email) for email in spellings]
    assert [a.status_code for a in answers] == [202, 202, 429]
    assert error_code(answers[2]) == "RATE_LIMITED" and int(answers[2]["Retry-After"]) > 0
    assert len(mailbox.messages(owner.email)) == 2
    # An unknown address is throttled alike: a 429 tells nothing about the account.
    ghost = [ask_reset(api_client, "ghost@example.com").status_code for _ in range(3)]
    assert ghost == [202, 202, 429]


@override_settings(
    THROTTLE_RATES=settings.THROTTLE_RATES
    | {"password_reset_ip": (3, 3600), "password_reset_account": (1000, 3600)}
)
def test_reset_is_throttled_per_client(api_client):
    statuses = [
        ask_reset(api_client, f"person{n}@example.com", REMOTE_ADDR="198.51.100.7").status_code
        for n in range(4)
    ]
    assert statuses == [202, 202, 202, 429]
    assert ask_reset(api_client, "other@example.com", REMOTE_ADDR="198.51.100.8").status_code == 202


def test_smtp_down_answers_the_same_and_logs_without_secrets(api_client, owner, settings, caplog):
    from tests.servers import free_port

    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()  # nothing listens
    with caplog.at_level(logging.INFO):
        known = ask_reset(api_client, owner.email)
    unknown = ask_reset(api_client, "nobody@example.com")

    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()
    failures = [r for r in caplog.records if r.name == "sigsentry.mail"]
    assert [r.getMessage() for r in failures] == [
        "email not sent: password_reset (ConnectionRefusedError)"
    ]
    assert owner.email not in caplog.text and "/reset/" not in caplog.text


# Pages -------------------------------------------------------------------------------


def test_login_page_links_to_the_reset_page():
    page = html(Client().get("/login/"))
    assert '<a href="/reset/">Forgot password?</a>' in page


def test_reset_pages_ask_mail_and_set_the_password(mailbox, owner):
    client = Client()
    form = client.get("/reset/")
    assert form.status_code == 200 and "Send reset link" in html(form)
    assert_no_inline_code(html(form))
    sent = client.post("/reset/", {"email": owner.email}, follow=True)
    assert "If an account uses this email" in html(sent)
    run_ready_tasks()
    token = token_from(mailbox.wait_for(owner.email)[0])

    page = client.get(f"/reset/{token}/", follow=True)
    assert_no_inline_code(html(page))
    weak = client.post("/reset/set-password/", {"password": "short"})
    assert weak.status_code == 200 and 'id="id_password_error"' in html(weak)
    done = client.post("/reset/set-password/", {"password": NEW_PASSWORD})
    assert done.status_code == 302 and done["Location"] == "/login/"
    owner.refresh_from_db()
    assert owner.check_password(NEW_PASSWORD)
    used = client.get(f"/reset/{token}/")
    assert used.status_code == 400 and "This link no longer works" in html(used)


def test_an_unknown_email_on_the_page_gets_the_same_answer(mailbox):
    answer = Client().post("/reset/", {"email": "nobody@example.com"}, follow=True)
    assert "If an account uses this email" in html(answer)
    run_ready_tasks()
    assert mailbox.messages() == []


def test_reset_forms_need_the_csrf_token(owner):
    client = Client(enforce_csrf_checks=True)
    assert client.post("/reset/", {"email": owner.email}).status_code == 403
    token = make_reset_token(owner)
    assert client.post(f"/reset/{token}/", {"password": NEW_PASSWORD}).status_code == 403
    owner.refresh_from_db()
    assert owner.check_password(PASSWORD)


def test_a_reset_ends_the_dashboard_session_too(owner):
    browser = logged_in(owner)
    assert browser.get("/").status_code == 200
    Client().post(f"/reset/{make_reset_token(owner)}/", {"password": NEW_PASSWORD})
    assert browser.get("/")["Location"].startswith("/login/")


@override_settings(THROTTLE_RATES=settings.THROTTLE_RATES | {"failed_auth_ip": (3, 300)})
def test_bad_links_on_the_reset_page_count_against_the_client_like_the_api(owner, throttle_clock):
    client = Client(REMOTE_ADDR="198.51.100.9")
    pages = [client.get(f"/reset/{owner.pk}-bad{n}/").status_code for n in range(4)]
    assert pages == [400, 400, 400, 429]
    limited = client.get(f"/reset/{owner.pk}-bad/")
    assert "Too many attempts" in limited.content.decode()
    # one budget for the page and the API: a good token is refused too, until the window ends
    good = make_reset_token(owner)
    api = Client(REMOTE_ADDR="198.51.100.9")
    answer = api.post(
        CONFIRM, {"token": good, "password": NEW_PASSWORD}, content_type="application/json"
    )
    assert answer.status_code == 429 and error_code(answer) == "RATE_LIMITED"
    assert Client(REMOTE_ADDR="198.51.100.10").get(f"/reset/{good}/").status_code == 302


@override_settings(THROTTLE_RATES=settings.THROTTLE_RATES | {"failed_auth_ip": (2, 300)})
def test_a_good_reset_link_gives_its_count_back(owner, throttle_clock):
    client = Client(REMOTE_ADDR="198.51.100.11")
    good = make_reset_token(owner)
    assert [client.get(f"/reset/{good}/").status_code for _ in range(5)] == [302] * 5


def test_an_ask_the_worker_reaches_after_a_links_life_is_dropped(
    api_client, mailbox, owner, time_machine, caplog
):
    """Found by a review: a worker down or behind for hours mailed every queued ask then,
    each with a fresh link (the retries already refuse to be that late)."""
    time_machine.move_to(timezone.now(), tick=False)
    assert api_client.post(RESET, {"email": owner.email}, format="json").status_code == 202
    time_machine.shift(timedelta(seconds=settings.PASSWORD_RESET_TIMEOUT + 1))

    with caplog.at_level(logging.WARNING, logger="sigsentry.mail"):
        run_ready_tasks()

    assert mailbox.messages() == []
    assert "password reset ask dropped" in caplog.text and owner.email not in caplog.text


def stored_task_arguments() -> str:
    return " ".join(json.dumps(args) for args in DBTaskResult.objects.values_list("args_kwargs"))


def test_the_worker_forgets_an_ask_once_it_is_done_and_keeps_one_still_waiting(
    api_client, mailbox, owner
):
    """A reset ask holds the address it names, an account's or not: kept with the task
    results, the database told for 7 days who had asked about which address. The urgent
    checks (every 15 s) delete the finished ones; one not yet run stays, to be mailed."""
    ask_reset(api_client, owner.email)
    ask_reset(api_client, "nobody@example.com")
    assert api_client.post(RESET, {"email": "later@example.com"}, format="json").status_code == 202
    assert "nobody@example.com" in stored_task_arguments()

    urgent_checks.call()

    stored = stored_task_arguments()
    assert owner.email not in stored and "nobody@example.com" not in stored
    assert "later@example.com" in stored
    run_ready_tasks()
    assert len(mailbox.messages(owner.email)) == 1
    urgent_checks.call()
    assert "later@example.com" not in stored_task_arguments()


def test_an_ask_whose_worker_died_is_run_again_then_forgotten(api_client, mailbox, owner):
    """Found by an audit: a worker killed mid-ask left its row RUNNING, with the address,
    for good. The urgent checks take it back once stalled; it runs, and goes."""
    assert api_client.post(RESET, {"email": owner.email}, format="json").status_code == 202
    ask = DBTaskResult.objects.get()
    stalled = timezone.now() - STALLED_AFTER - timedelta(seconds=1)
    DBTaskResult.objects.filter(pk=ask.pk).update(status="RUNNING", started_at=stalled)

    urgent_checks.call()  # taken back
    assert owner.email in stored_task_arguments()
    run_ready_tasks()
    urgent_checks.call()

    assert len(mailbox.messages(owner.email)) == 1
    assert owner.email not in stored_task_arguments()


def test_an_ask_killed_mid_try_is_mailed_once_by_its_retry_not_again(api_client, mailbox, owner):
    """Found by a fault-injection audit (kill -9 of the worker while the SMTP server was in
    DATA): the try's queued retry sent the link, then the urgent checks ran the stalled ask
    again and it mailed a second link. Staged: the try fails with its retry queued, and the
    ask's row is left as a killed worker leaves it (django-tasks records any exception)."""
    from apps.accounts import mail

    mailbox.refusing = 1
    assert ask_reset(api_client, owner.email).status_code == 202
    [retry] = DBTaskResult.objects.filter(task_path=mail.resend_email.module_path)
    stalled = timezone.now() - STALLED_AFTER - timedelta(seconds=1)
    DBTaskResult.objects.exclude(pk=retry.pk).update(status="RUNNING", started_at=stalled)
    assert mail.resend_email.call(*retry.args_kwargs["args"]) == "sent"
    DBTaskResult.objects.filter(pk=retry.pk).update(status="SUCCESSFUL")

    urgent_checks.call()  # the ask taken back, run again
    run_ready_tasks()
    urgent_checks.call()

    assert len(mailbox.messages(owner.email)) == 1
    assert owner.email not in stored_task_arguments()


@pytest.mark.parametrize("confirmed_before", [False, True])
def test_a_reset_never_turns_off_two_factor(api_client, mailbox, confirmed_before):
    """A mailbox alone never gets past a second factor, the address confirmed or not (a
    review: a reset that turned off two-factor set while the address was unconfirmed let
    whoever reads an owner's mail take an account its owner had protected)."""
    user = UserFactory(email_confirmed_at=timezone.now() if confirmed_before else None)
    enable_two_factor(user)
    ask_reset(api_client, user.email)
    token = token_from(mailbox.wait_for(user.email)[-1])

    assert confirm(api_client, token).status_code == 204

    login = api_client.post(
        "/v1/auth/login", {"email": user.email, "password": NEW_PASSWORD}, format="json"
    )
    assert login.status_code == 200 and login.json()["mfaRequired"] is True
    assert "access" not in login.json()
    assert TotpDevice.objects.filter(user=user, confirmed_at__isnull=False).exists()
    assert RecoveryCode.objects.filter(user=user).count() == 10
