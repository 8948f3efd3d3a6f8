"""`core.logging`: one JSON object per line; `core.middleware.AccessLogMiddleware`: one line
per request, carrying the authentication decision."""

from __future__ import annotations

import io
import json
import logging
import re
import secrets

import pytest
from django.core import mail
from django.db import (
    DatabaseError,
    DataError,
    IntegrityError,
    OperationalError,
    connection,
    transaction,
)
from django.test import Client
from django_tasks import TaskResultStatus, task
from django_tasks_db.models import DBTaskResult

from apps.accounts import password_reset
from apps.accounts import services as account_services
from apps.accounts.models import User
from apps.analyses.models import Analysis
from apps.apikeys import authentication
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from apps.invitations import services as invitations
from apps.invitations import views as invitation_views
from apps.orgs.models import Membership
from core.logging import JsonFormatter, RedactRequestPath, request_route
from core.models import WorkerCounter
from tests.conftest import bearer
from tests.factories import PASSWORD, make_key
from tests.pages import logged_in
from tests.schema import a_column_this_release_does_not_fill
from tests.servers import free_port
from tests.tasks import run_ready_tasks

#: A token-like segment of 20 characters, the length from which paths are masked.
TOKEN_20 = "Ab3dEf6hIj9kLm2nOp5q"


@pytest.mark.parametrize(
    "fields",
    [
        {"key_id": "k", "client_ip": None, "count": 3, "ratio": 0.5, "ok": True},
        {"label": 'Ünïcode “quotes” \\ and "escapes"\n', "emoji": "🔑"},
    ],
)
def test_json_lines_hold_the_fields_as_top_level_plain_values(fields):
    record = logging.LogRecord("sigsentry.access", logging.INFO, __file__, 1, "m %s", ("x",), None)
    record.__dict__.update(fields)
    record.request = object()  # not a plain value: never turned into text
    record.created, record.msecs = 1_700_000_000.1239, 123.9
    entry = json.loads(JsonFormatter().format(record))
    assert {name: entry[name] for name in fields} == json.loads(json.dumps(fields))
    assert (entry["level"], entry["logger"], entry["message"]) == (
        "INFO",
        "sigsentry.access",
        "m x",
    )
    assert entry["request"] is None
    assert entry["time"] == "2023-11-14T22:13:20.123Z"


def test_an_exception_is_one_field_of_the_same_line():
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "sigsentry",
            logging.ERROR,
            __file__,
            1,
            "failed",
            (),
            exc_info=__import__("sys").exc_info(),
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exception"]


@pytest.fixture
def access_log(caplog):
    caplog.set_level(logging.INFO, logger="sigsentry.access")
    return lambda: [r for r in caplog.records if r.name == "sigsentry.access"]


@pytest.mark.django_db
def test_each_request_is_one_access_line_with_the_key_decision(api_client, project, access_log):
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)

    assert api_client.get("/v1/analyses", **bearer(plaintext)).status_code == 200

    (record,) = access_log()
    assert (record.method, record.route, record.status) == ("GET", "/v1/analyses", 200)
    assert (record.auth_outcome, record.key_id, record.key_prefix) == (
        "ok",
        str(api_key.id),
        api_key.prefix,
    )
    assert record.client_ip == "127.0.0.1"
    assert record.duration_ms >= 0
    line = JsonFormatter().format(record)
    assert plaintext not in line and api_key.digest not in line


@pytest.mark.django_db
def test_a_jwt_request_names_the_user_and_a_page_names_no_decision(
    api_client, owner, user_token, access_log
):
    assert api_client.get("/v1/me", **bearer(user_token(owner))).status_code == 200
    assert api_client.get("/login/").status_code == 200

    me, page = access_log()
    assert (me.auth_outcome, me.user_id) == ("ok", str(owner.id))
    assert not hasattr(me, "key_id")
    assert page.route == "/login/" and not hasattr(page, "auth_outcome")


@pytest.mark.django_db
def test_a_route_with_a_token_in_its_path_logs_the_pattern_not_the_path(api_client, access_log):
    api_client.get("/v1/organizations/some-secret-looking-id/members")

    (record,) = access_log()
    assert record.route == "/v1/organizations/<str:org_id>/members"
    assert "some-secret-looking-id" not in JsonFormatter().format(record)


# No live token from a path in any line: reset and invitation links carry one.


@pytest.fixture
def console():
    """What the configured console handler writes (its stream swapped for the test)."""
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == "console")
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    try:
        yield buffer
    finally:
        handler.setStream(previous)


def reset_link(user) -> tuple[str, str]:
    token = password_reset.make_reset_token(user)
    return f"/reset/{token}/", token


def invitation_link(owner, organization) -> tuple[str, str]:
    membership = Membership.objects.get(user=owner, organization=organization)
    invitations.invite_member(actor_membership=membership, email="new@example.com", role="admin")
    token = mail.outbox[-1].body.split("/invitations/")[1].split("/")[0]
    return f"/invitations/{token}/", token


def logged(caplog, console) -> str:
    """Every record as its logger made it (caplog) and as the console wrote it."""
    return "\n".join(r.getMessage() for r in caplog.records) + "\n" + console.getvalue()


@pytest.mark.django_db
@pytest.mark.parametrize("link", [reset_link, invitation_link])
def test_a_refused_csrf_check_names_the_route_not_the_token(
    link, owner, organization, caplog, console, settings
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    path, token = link(owner) if link is reset_link else link(owner, organization)
    caplog.set_level(logging.DEBUG)

    response = Client(enforce_csrf_checks=True).post(path, {"password": "a-new-Pa55phrase-2026"})

    assert response.status_code == 403
    text = logged(caplog, console)
    assert "Forbidden (CSRF cookie not set.)" in console.getvalue()
    assert token not in text
    assert "/<str:token>/" in text


def invitation_page_failing(owner, organization, settings, monkeypatch, error: Exception):
    """An invitation link whose token lookup raises `error`: its page's response, its token."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    path, token = invitation_link(owner, organization)

    def failing(_token):
        raise error

    monkeypatch.setattr(invitation_views, "invitation_for_token", failing)
    return Client(raise_request_exception=False).get(path), token


@pytest.mark.django_db
def test_a_503_on_a_token_page_names_the_route_not_the_token(
    owner, organization, caplog, console, settings, monkeypatch
):
    caplog.set_level(logging.DEBUG)

    response, token = invitation_page_failing(
        owner, organization, settings, monkeypatch, OperationalError("the database is unreachable")
    )

    assert response.status_code == 503
    text = logged(caplog, console)
    assert "Service Unavailable" in console.getvalue()
    assert "database unavailable while serving /invitations/<str:token>/" in text
    assert token not in text


@pytest.mark.django_db
def test_a_race_lost_on_a_page_is_logged_as_a_conflict_not_an_outage(
    owner, organization, caplog, console, settings, monkeypatch
):
    """Found by an integrity audit: the API told a conflict from an outage, the pages did
    not (an organization deleted in the admin while its usage was copied: a page for an
    outage)."""
    caplog.set_level(logging.DEBUG)

    response, _token = invitation_page_failing(
        owner, organization, settings, monkeypatch, IntegrityError("violates foreign key")
    )

    assert response.status_code == 503
    text = logged(caplog, console)
    assert "database conflict with a concurrent change while serving /invitations/" in text
    assert "database unavailable" not in text


@pytest.mark.django_db
def test_a_write_the_schema_refuses_is_logged_as_an_outage_not_a_race(
    owner, organization, caplog, console, settings, monkeypatch
):
    """Found by a rolling-deploy audit: a release's inserts refused by a column a later
    release added (NOT NULL, no database default) were logged as races, which page no one."""
    caplog.set_level(logging.DEBUG)
    a_column_this_release_does_not_fill(WorkerCounter)
    with pytest.raises(IntegrityError) as refused, transaction.atomic():
        WorkerCounter.objects.create(name="refused", value=1)

    response, _token = invitation_page_failing(
        owner, organization, settings, monkeypatch, refused.value
    )

    assert response.status_code == 503
    text = logged(caplog, console)
    assert "database unavailable while serving /invitations/" in text
    assert "conflict" not in text


def test_a_path_that_matched_nothing_is_written_with_its_long_segments_masked(rf):
    request = rf.get("/reset/" + "A" * 43)  # a token link with its slash cut off
    request.resolver_match = None
    assert request_route(request) == "/reset/…"
    request = rf.get("/v1/nothing/here")
    request.resolver_match = None
    assert request_route(request) == "/v1/nothing/here"


def test_a_segment_of_twenty_characters_is_masked_and_one_of_nineteen_is_not(rf):
    """The threshold the masking promises: a token of 20 characters is one."""
    request = rf.get(f"/reset/{TOKEN_20}/")
    request.resolver_match = None
    assert TOKEN_20 not in request_route(request)
    request = rf.get(f"/reset/{TOKEN_20[:19]}/")  # shorter: a word, written as it is
    request.resolver_match = None
    assert request_route(request) == f"/reset/{TOKEN_20[:19]}/"


def test_the_escaped_path_django_writes_for_a_non_ascii_url_is_redacted_too(rf):
    """Django's per-response lines carry a non-ASCII path escaped (`unicode_escape`)."""
    request = rf.get(f"/caf\u00e9/{TOKEN_20}{TOKEN_20}/")
    request.resolver_match = None
    escaped = request.path.encode("unicode_escape").decode("ascii")
    record = logging.LogRecord(
        "django.request", logging.WARNING, __file__, 1, "Not Found: %s", (escaped,), None
    )
    record.request = request

    RedactRequestPath().filter(record)

    assert escaped != request.path and TOKEN_20 not in record.getMessage()


# Every answer names its request (X-Request-Id) and so does every line written for it.

REQUEST_ID = re.compile(r"req_[0-9a-f]{24}")


@pytest.mark.django_db
def test_every_answer_carries_an_id_of_its_own_and_its_access_line_the_same(
    api_client, project, access_log
):
    _key, plaintext = make_key(KeyKind.SECRET, project=project)
    sent_by_the_client = "req_" + "0" * 24
    responses = [
        api_client.get("/v1/analyses", **bearer(plaintext)),
        api_client.get("/v1/analyses", **bearer("ss_secret_" + "x" * 40)),
        api_client.get("/v1/analyses", HTTP_X_REQUEST_ID=sent_by_the_client),
        api_client.get("/login/"),
        api_client.get("/no-such-page/"),
    ]

    assert [r.status_code for r in responses] == [200, 401, 401, 200, 404]
    ids = [r["X-Request-Id"] for r in responses]
    assert all(REQUEST_ID.fullmatch(request_id) for request_id in ids), ids
    assert len(set(ids)) == len(ids) and sent_by_the_client not in ids
    assert [record.request_id for record in access_log()] == ids


@pytest.mark.django_db
def test_a_500_page_shows_its_reference_and_each_line_of_the_request_carries_it(
    owner, organization, caplog, console, settings, monkeypatch
):
    response, _token = invitation_page_failing(
        owner, organization, settings, monkeypatch, RuntimeError("boom")
    )
    logging.getLogger("sigsentry").warning("written after the request")

    assert response.status_code == 500
    request_id = response["X-Request-Id"]
    assert f"Reference: <code>{request_id}</code>" in response.content.decode()
    lines = [json.loads(line) for line in console.getvalue().splitlines()]
    error = next(line for line in lines if line["logger"] == "django.request")
    assert "RuntimeError: boom" in error["exception"]
    access = next(line for line in lines if line["logger"] == "sigsentry.access")
    assert error["request_id"] == access["request_id"] == request_id
    assert "request_id" not in lines[-1]  # no request: no id


def console_lines(console) -> list[dict]:
    return [json.loads(line) for line in console.getvalue().splitlines()]


@pytest.mark.django_db
def test_the_line_django_writes_after_an_api_error_carries_the_request_id(
    api_client, project, console, monkeypatch
):
    """Django writes "Service Unavailable: …" once the middleware returned (`log_response`):
    the id comes from the request it passes (found by the observability audit)."""
    _key, plaintext = make_key(KeyKind.SECRET, project=project)

    def unreachable(_digest):
        raise OperationalError("the database is unreachable")

    monkeypatch.setattr(authentication, "key_by_digest", unreachable)

    response = api_client.get("/v1/analyses", **bearer(plaintext))

    assert response.status_code == 503
    lines = console_lines(console)
    django_line = next(line for line in lines if line["logger"] == "django.request")
    assert django_line["message"] == "Service Unavailable: /v1/analyses"
    assert {line.get("request_id") for line in lines} == {response["X-Request-Id"]}


@pytest.mark.django_db
def test_an_email_failing_after_the_response_is_logged_with_the_requests_id(
    owner, console, settings
):
    """Account emails are sent once the response went out (`apps.accounts.mail`)."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()  # nothing listens

    response = logged_in(owner).post(
        "/account/password/",
        {"current_password": PASSWORD, "new_password": "a-much-better-passphrase-7"},
    )

    assert response.status_code == 302
    failed = next(line for line in console_lines(console) if "email not sent" in line["message"])
    assert failed["request_id"] == response["X-Request-Id"]
    assert (failed["email_kind"], failed["user_id"]) == ("password_changed", str(owner.pk))
    assert owner.email not in console.getvalue()


@pytest.mark.django_db
def test_a_refused_csrf_check_on_the_api_names_the_user_it_refused(owner, access_log):
    client = logged_in(owner, Client(enforce_csrf_checks=True))

    response = client.post("/v1/organizations", {"name": "X"}, content_type="application/json")

    assert response.status_code == 403
    (record,) = access_log()
    assert (record.auth_outcome, record.user_id) == ("PERMISSION_DENIED", str(owner.pk))


@pytest.mark.django_db
def test_a_refused_csrf_check_on_the_api_is_logged_as_the_pages_are(owner, console):
    """The cookie session's check is Django's middleware itself (`enforce_csrf`), which logs
    its refusals; DRF's SessionAuthentication check returns the reason and logs nothing."""
    client = logged_in(owner, Client(enforce_csrf_checks=True))

    response = client.post("/v1/organizations", {"name": "X"}, content_type="application/json")

    assert response.status_code == 403
    (line,) = [line for line in console_lines(console) if line["logger"] == "django.security.csrf"]
    assert (line["level"], line["message"]) == (
        "WARNING",
        "Forbidden (CSRF cookie not set.): /v1/organizations",
    )


def test_a_refused_host_is_logged_without_its_value(console):
    """Found by the observability audit: Django's line quoted the header whole, a key in it
    too, with a traceback."""
    key = "ss_secret_" + "A1" * 19

    response = Client().get("/v1/me", HTTP_HOST=f"evil-{key}.example")

    assert response.status_code == 400
    text = console.getvalue()
    assert "Invalid HTTP_HOST header (its value is not written)" in text
    assert "A1A1" not in text and "Traceback" not in text


@pytest.mark.django_db
def test_a_refused_log_in_or_refresh_is_the_requests_decision(api_client, owner, access_log):
    """Found by the observability audit: credential stuffing showed only as bare 401s."""
    login = api_client.post(
        "/v1/auth/login", {"email": owner.email, "password": "not-the-password"}, format="json"
    )
    refresh = api_client.post("/v1/auth/refresh", {"refresh": "not-a-token"}, format="json")
    signup = api_client.post("/v1/auth/signup", {}, format="json")

    assert [login.status_code, refresh.status_code, signup.status_code] == [401, 401, 400]
    login_line, refresh_line, signup_line = access_log()
    assert login_line.auth_outcome == "INVALID_CREDENTIALS"
    assert refresh_line.auth_outcome == "TOKEN_INVALID"
    assert not hasattr(signup_line, "auth_outcome")  # no credential was checked
    assert not hasattr(login_line, "user_id")  # an address is never written either


# No value of a row from a database error's DETAIL in any line, nor in a stored traceback.


@task()
def store_a_copy_of_key(key_id: str) -> None:
    """A task that breaks a unique constraint on a digest (a race lost, a bug)."""
    key = ApiKey.objects.get(pk=key_id)
    with transaction.atomic():  # a savepoint: the test's transaction goes on
        fields = [f.attname for f in ApiKey._meta.concrete_fields if not f.primary_key]
        ApiKey.objects.create(**{name: getattr(key, name) for name in fields})


def failed_run_of(failing_task, key) -> DBTaskResult:
    """`failing_task` run on `key`'s id by the worker's code: its stored result, failed."""
    result = failing_task.enqueue(str(key.pk))
    run_ready_tasks()
    stored = DBTaskResult.objects.get(pk=result.id)
    assert stored.status == TaskResultStatus.FAILED
    return stored


@pytest.mark.django_db
def test_a_task_failing_on_a_unique_digest_writes_no_digest_in_its_line_or_result(project, console):
    key, _plaintext = make_key(KeyKind.SECRET, project=project)

    stored = failed_run_of(store_a_copy_of_key, key)

    assert "IntegrityError" in console.getvalue() and "IntegrityError" in stored.traceback
    assert key.digest not in console.getvalue()
    assert key.digest not in stored.traceback


@pytest.mark.django_db
def test_a_logged_unique_violation_on_an_email_does_not_write_the_address(owner, console):
    with pytest.raises(IntegrityError), transaction.atomic():
        try:
            User.objects.create(email=owner.email)
        except IntegrityError:
            logging.getLogger("sigsentry").exception("could not store")
            raise

    (line,) = console_lines(console)
    assert "IntegrityError" in line["exception"]
    assert owner.email not in console.getvalue()


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's DETAIL")
def test_a_failing_row_with_a_blank_line_in_a_value_is_not_written_past_it(project, console):
    """PostgreSQL's "Failing row contains (…)" quotes each value as stored: a blank line in
    one (an analysis's input) ended the DETAIL there, and the rest of the row was written."""
    rest = "-".join(["after", "the", "blank", "line"])  # not in this file's lines either
    with pytest.raises(IntegrityError), transaction.atomic():
        try:
            Analysis.objects.create(project_id=project.id, title=None, input=f"one\n\n{rest}")
        except IntegrityError:
            logging.getLogger("sigsentry").exception("could not store")
            raise

    (line,) = console_lines(console)
    assert "IntegrityError" in line["exception"]
    assert rest not in console.getvalue()


# Nor the value a DataError's first line quotes, nor the statement's line it points at (the
# values in it: Django's psycopg 3 backend binds on the client).

POSTGRESQL_ONLY = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's text")


@pytest.mark.django_db
@POSTGRESQL_ONLY
@pytest.mark.parametrize(
    ("setup", "statement", "kind"),
    [
        (None, "SELECT %s::uuid", "invalid input syntax for type uuid: (value not written)"),
        (
            "CREATE TYPE sigsentry_test_mood AS ENUM ('calm')",
            "SELECT %s::sigsentry_test_mood",
            "invalid input value for enum sigsentry_test_mood: (value not written)",
        ),
    ],
)
def test_a_logged_data_error_does_not_write_the_value_it_quotes(console, setup, statement, kind):
    """Bound on the client (the default), the value is in the statement's line; bound by the
    server (DATABASE_POOLER=none, a CI step), in the CONTEXT, whole where the server's
    `log_parameter_max_length_on_error` says so."""
    secret = f"{secrets.token_hex(8)}\"'\n{secrets.token_hex(8)}"  # quotes and a line break
    with connection.cursor() as cursor:
        cursor.execute("SET log_parameter_max_length_on_error = -1")
        if setup:
            cursor.execute(setup)
        with pytest.raises(DataError), transaction.atomic():
            try:
                cursor.execute(statement, [secret])
            except DataError:
                logging.getLogger("sigsentry").exception("could not read")
                raise

    (line,) = console_lines(console)
    assert f"DataError: {kind}\n" in line["exception"]
    assert (
        "\nLINE 1: (not written" in line["exception"]
        or "\nCONTEXT:  unnamed portal parameter $1 = (value not written)" in line["exception"]
    )
    for part in secret.split("\n"):
        assert part.strip("\"'") not in console.getvalue()


@pytest.mark.django_db
@POSTGRESQL_ONLY
def test_a_logged_error_keeps_its_hint_and_no_caret_under_the_statement_not_written(console):
    """Only the values go: the HINT after a DETAIL says what to do, and the caret under a
    statement line not written points at a column of a line no one can read."""
    secret = secrets.token_hex(8)
    statements = [
        f"DO $$ BEGIN RAISE EXCEPTION 'refused' USING DETAIL = '{secret}', HINT = 'try"
        " again'; END $$",
        "SELECT sigsentry_no_such_function(%s)",
    ]
    with connection.cursor() as cursor:
        for statement in statements:
            with pytest.raises(DatabaseError), transaction.atomic():
                try:
                    cursor.execute(statement, [secret] if "%s" in statement else None)
                except DatabaseError:
                    logging.getLogger("sigsentry").exception("could not run")
                    raise

    raised, undefined = (line["exception"] for line in console_lines(console))
    assert "DETAIL:  (not written: it quotes the row's values)\nHINT:  try again" in raised
    assert (
        "LINE 1: (not written: it holds the statement's values)\nHINT:  No function matches"
        in undefined
    )
    assert secret not in console.getvalue()


@task()
def read_a_digest_as_a_uuid(key_id: str) -> None:
    """A task whose query takes a value of the wrong type (a bug)."""
    digest = ApiKey.objects.get(pk=key_id).digest
    with transaction.atomic(), connection.cursor() as cursor:  # the test's transaction goes on
        cursor.execute("SELECT %s::uuid", [digest])


@pytest.mark.django_db
@POSTGRESQL_ONLY
def test_a_task_failing_on_a_data_error_keeps_no_value_in_its_line_or_result(project, console):
    key, _plaintext = make_key(KeyKind.SECRET, project=project)

    stored = failed_run_of(read_a_digest_as_a_uuid, key)

    assert "invalid input syntax for type uuid: (value not written)" in stored.traceback
    assert "DataError" in console.getvalue()
    assert key.digest not in console.getvalue()
    assert key.digest not in stored.traceback


@pytest.mark.django_db
def test_no_line_writes_a_credential_a_client_sent_whatever_quotes_it(project, owner, console):
    """A line that quotes what a client sent (an identifier, an exception's message) masks
    every key and token in it, as error bodies do: a key sent as GitHub's key
    identifier was written whole to the log (a pentest), and any new line could do the same."""
    _key, secret = make_key(KeyKind.SECRET, project=project)
    access = account_services.start_session(owner).access
    logger = logging.getLogger("sigsentry.test")
    logger.warning("unknown identifier %r", f"{secret}!")
    logger.warning("sent %s", f"Bearer {access}", extra={"key_prefix": secret[:14], "n": 3})
    try:
        raise ValueError(f"cannot parse {secret}")
    except ValueError:
        logger.exception("failed")

    written = console.getvalue()
    lines = console_lines(console)
    assert len(lines) == 3 and lines[1]["n"] == 3
    assert lines[1]["key_prefix"] == secret[:14]  # a named field, the caller's: kept
    assert secret not in written and secret[:24] not in written
    assert access not in written and access.split(".")[1] not in written
    assert "unknown identifier" in lines[0]["message"] and "ValueError" in lines[2]["exception"]
