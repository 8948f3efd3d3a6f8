"""The authentication hot path: queries per request, and the raw lookups equal the ORM.

Timings live in bench/ (`make bench`); these tests pin what the timings rely
on and what must never regress: one query per project-key request, at most
two for an organization key on a project-scoped endpoint, none for a
credential rejected by its shape, and a raw SQL lookup that returns exactly
what the ORM would.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import path
from django.utils import timezone
from rest_framework.response import Response

from apps.accounts import services, tokens
from apps.accounts.models import AuthSession
from apps.accounts.selectors import session_with_user
from apps.apikeys import keyformat
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from apps.apikeys.selectors import KeyRecord, key_by_digest
from apps.apikeys.services import revoke_key
from apps.orgs.access import project_for_member
from apps.orgs.scoped_api import ProjectScopedView
from apps.orgs.selectors import MembershipRef, membership_refs, memberships_of
from apps.projects.models import Project
from apps.projects.selectors import ProjectRecord, project_by_id
from core.api import ApiView
from core.errors import ProjectNotFound
from core.permissions import Permission
from sigsentry.urls import urlpatterns as product_urlpatterns
from tests.conftest import bearer
from tests.factories import (
    MembershipFactory,
    OrganizationFactory,
    make_key,
    make_legacy_key,
)

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]


class AuthOnlyProbe(ApiView):
    """Authentication and nothing else, to count what authentication costs."""

    def get(self, request):
        return Response({"ok": True})


class ProjectScopedProbe(ProjectScopedView):
    """Authentication, project resolution and a permission check."""

    permission_by_method = {"GET": Permission.ANALYSIS_READ}

    def get(self, request):
        return Response({"ok": True})


urlpatterns = [
    path("v1/probe/auth", AuthOnlyProbe.as_view()),
    path("v1/probe/scoped", ProjectScopedProbe.as_view()),
    *product_urlpatterns,
]


@pytest.fixture
def credential(request, project, owner, user_token):
    """A credential of the kind named by the test's parameter."""
    kind = request.param
    if kind == "secret key":
        return make_key(KeyKind.SECRET, project=project)[1]
    if kind == "SDK key":
        return make_key(KeyKind.PUBLIC, project=project)[1]
    if kind == "legacy key":
        return make_legacy_key(project)[1]
    if kind == "org key":
        return make_key(KeyKind.ORGANIZATION, organization=project.organization)[1]
    if kind == "JWT":
        return user_token(owner)
    raise AssertionError(kind)


def count_queries(client, url: str, **headers) -> tuple[int, list[str]]:
    """Queries of one request, after a first one that warmed up (and recorded lastUsedAt)."""
    first = client.get(url, **headers)
    assert first.status_code == 200, first.content
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url, **headers)
    assert response.status_code == 200, response.content
    return len(ctx.captured_queries), [q["sql"] for q in ctx.captured_queries]


@pytest.mark.usefixtures("before_the_sunset")
@pytest.mark.parametrize("credential", ["secret key", "SDK key", "legacy key"], indirect=True)
@pytest.mark.parametrize("url", ["/v1/me", "/v1/probe/auth", "/v1/probe/scoped"])
def test_project_key_request_makes_exactly_one_query(api_client, credential, url):
    count, sql = count_queries(api_client, url, **bearer(credential))
    assert count == 1, sql


@pytest.mark.parametrize("credential", ["org key"], indirect=True)
def test_org_key_on_a_project_scoped_endpoint_makes_at_most_two_queries(
    api_client, credential, project
):
    count, sql = count_queries(
        api_client, "/v1/probe/scoped", **bearer(credential), HTTP_X_PROJECT_ID=str(project.id)
    )
    assert count <= 2, sql


@pytest.mark.parametrize("credential", ["org key"], indirect=True)
def test_org_key_on_me_makes_one_query(api_client, credential):
    count, sql = count_queries(api_client, "/v1/me", **bearer(credential))
    assert count == 1, sql


@pytest.mark.parametrize("credential", ["JWT"], indirect=True)
def test_jwt_authentication_makes_one_query(api_client, credential):
    count, sql = count_queries(api_client, "/v1/probe/auth", **bearer(credential))
    assert count == 1, sql


@pytest.mark.parametrize("credential", ["JWT"], indirect=True)
def test_jwt_on_me_makes_two_queries_session_and_memberships(api_client, credential):
    count, sql = count_queries(api_client, "/v1/me", **bearer(credential))
    assert count == 2, sql


@pytest.mark.parametrize("credential", ["JWT"], indirect=True)
def test_jwt_on_a_project_scoped_endpoint_makes_two_queries(api_client, credential, project):
    count, sql = count_queries(
        api_client, "/v1/probe/scoped", **bearer(credential), HTTP_X_PROJECT_ID=str(project.id)
    )
    assert count == 2, sql


def _bad_checksum(project) -> str:
    key = make_key(KeyKind.SECRET, project=project)[1]
    return key[:-1] + ("A" if key[-1] != "A" else "B")


@pytest.mark.usefixtures("before_the_sunset")
@pytest.mark.parametrize(
    ("header", "code"),
    [
        (lambda project: "Basic dXNlcjpwYXNz", "AUTHORIZATION_MALFORMED"),
        (lambda project: "Bearer", "AUTHORIZATION_MALFORMED"),
        (lambda project: "Bearer not-a-credential", "KEY_INVALID"),
        (lambda project: "Bearer ss_secret_short", "KEY_INVALID"),
        (lambda project: f"Bearer {_bad_checksum(project)}", "KEY_INVALID"),
        (lambda project: "Bearer tb_short", "KEY_INVALID"),
    ],
    ids=["basic", "empty bearer", "garbage", "truncated key", "bad checksum", "bad legacy"],
)
def test_credential_rejected_by_its_shape_makes_no_query(api_client, project, header, code):
    authorization = header(project)
    with CaptureQueriesContext(connection) as ctx:
        response = api_client.get("/v1/me", HTTP_AUTHORIZATION=authorization)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == code
    assert ctx.captured_queries == []


def test_legacy_key_after_the_sunset_makes_no_query(api_client, project, settings):
    _api_key, key = make_legacy_key(project)
    settings.LEGACY_KEYS_SUNSET_AT = timezone.now() - timedelta(seconds=1)
    with CaptureQueriesContext(connection) as ctx:
        response = api_client.get("/v1/me", **bearer(key))
    assert response.json()["error"]["code"] == "KEY_FORMAT_DEPRECATED"
    assert ctx.captured_queries == []


def test_revoked_key_is_rejected_on_the_next_request(api_client, project, owner):
    api_key, key = make_key(KeyKind.SECRET, project=project)
    assert api_client.get("/v1/probe/auth", **bearer(key)).status_code == 200
    revoke_key(actor=owner, api_key=api_key)
    response = api_client.get("/v1/probe/auth", **bearer(key))
    assert response.json()["error"]["code"] == "KEY_REVOKED"


def test_a_burst_of_requests_writes_last_used_at_once(api_client, project):
    api_key, key = make_key(KeyKind.SECRET, project=project)
    with CaptureQueriesContext(connection) as ctx:
        for _ in range(20):
            assert api_client.get("/v1/probe/auth", **bearer(key)).status_code == 200
    updates = [q["sql"] for q in ctx.captured_queries if q["sql"].startswith("UPDATE")]
    assert len(updates) == 1, updates
    api_key.refresh_from_db()
    assert api_key.last_used_at is not None


# The lookups return exactly what the ORM reads.


def orm_key_record(digest: str) -> KeyRecord | None:
    """What `key_by_digest` must return, read through the ORM."""
    k = ApiKey.objects.select_related("organization", "project").filter(digest=digest).first()
    if k is None:
        return None
    return KeyRecord(
        id=k.id,
        organization_id=k.organization_id,
        organization_name=k.organization.name,
        project_id=k.project_id,
        project_name=k.project.name if k.project else None,
        type=k.type,
        scope=k.scope,
        name=k.name,
        prefix=k.prefix,
        digest=k.digest,
        permissions=tuple(k.permissions),
        legacy=k.legacy,
        allowed_origins=tuple(k.allowed_origins),
        expires_at=k.expires_at,
        revoked_at=k.revoked_at,
        last_used_at=k.last_used_at,
        allowed_ips=tuple(k.allowed_ips),
        project_ids=tuple(k.project_ids),
        rate_limit_requests=k.rate_limit_requests,
        rate_limit_seconds=k.rate_limit_seconds,
    )


def assert_same_record(raw, orm) -> None:
    assert raw == orm
    for name in raw.__slots__:
        assert type(getattr(raw, name)) is type(getattr(orm, name)), name


@pytest.mark.parametrize("kind", [KeyKind.SECRET, KeyKind.PUBLIC, KeyKind.ORGANIZATION])
def test_key_by_digest_equals_the_orm(project, owner, kind):
    api_key, key = make_key(
        kind,
        project=project,
        actor=owner,
        expires_at=timezone.now() + timedelta(days=3),
        **({"allowed_origins": ["https://app.example.com"]} if kind is KeyKind.PUBLIC else {}),
    )
    ApiKey.objects.filter(pk=api_key.pk).update(
        last_used_at=timezone.now(),
        allowed_ips=["203.0.113.0/24", "2001:db8::/32"],
        rate_limit_requests=5,
        rate_limit_seconds=60,
        **({"project_ids": [str(project.id)]} if kind is KeyKind.ORGANIZATION else {}),
    )
    digest = keyformat.digest(key)
    raw = key_by_digest(digest)
    assert_same_record(raw, orm_key_record(digest))
    assert raw.expires_at is not None and raw.last_used_at is not None
    assert raw.allowed_ips == ("203.0.113.0/24", "2001:db8::/32")
    assert (raw.rate_limit_requests, raw.rate_limit_seconds) == (5, 60)
    assert (raw.project is None) == (kind is KeyKind.ORGANIZATION)
    assert raw.project is None or raw.project == ProjectRecord(
        project.id, project.name, project.organization_id
    )


def test_key_by_digest_equals_the_orm_for_a_revoked_legacy_key(project, owner):
    api_key, key = make_legacy_key(project)
    revoke_key(actor=owner, api_key=api_key)
    digest = keyformat.digest(key)
    raw = key_by_digest(digest)
    assert_same_record(raw, orm_key_record(digest))
    assert raw.revoked_at is not None and raw.legacy is True


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC),  # no fraction: the text has none
        datetime(2027, 1, 2, 3, 4, 5, 120000, tzinfo=UTC),  # trailing zeros dropped
        datetime(2027, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ],
)
def test_key_by_digest_reads_every_timestamp_exactly(project, owner, moment):
    """The key's timestamps are read as ISO 8601 text (Django's timestamptz loader is
    pure Python); every shape of that text must give back the stored instant."""
    api_key, key = make_key(KeyKind.SECRET, project=project, actor=owner)
    ApiKey.objects.filter(pk=api_key.pk).update(
        expires_at=moment, revoked_at=moment, last_used_at=moment
    )
    raw = key_by_digest(keyformat.digest(key))
    assert_same_record(raw, orm_key_record(keyformat.digest(key)))
    assert raw.expires_at == raw.revoked_at == raw.last_used_at == moment
    assert raw.expires_at.utcoffset() == timedelta(0)


def test_key_by_digest_reads_the_instant_whatever_the_session_time_zone(project, owner):
    """Django sets the session's time zone to UTC; the text carries its offset, so the
    record holds the same instant (in UTC) even on a session that says otherwise."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no session time zone")
    moment = datetime(2027, 1, 2, 3, 4, 5, 678900, tzinfo=UTC)
    api_key, key = make_key(KeyKind.SECRET, project=project, actor=owner)
    ApiKey.objects.filter(pk=api_key.pk).update(expires_at=moment)  # whatever the clock says
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL TIME ZONE 'Asia/Kolkata'")  # +05:30, until the test's rollback
    raw = key_by_digest(keyformat.digest(key))
    assert raw.expires_at == moment
    assert raw.expires_at.tzinfo is UTC


def test_key_by_digest_of_an_unknown_digest_is_none(project):
    make_key(KeyKind.SECRET, project=project)
    assert key_by_digest(keyformat.digest(keyformat.generate(KeyKind.SECRET))) is None


def test_a_digest_shaped_like_sql_is_only_ever_a_value(project):
    api_key, key = make_key(KeyKind.SECRET, project=project)
    assert key_by_digest("' OR '1'='1") is None
    assert key_by_digest(keyformat.digest(key) + "' OR 1=1 --") is None
    assert ApiKey.objects.filter(pk=api_key.pk).exists()


def test_project_lookup_for_org_keys_equals_the_orm(project):
    orm = Project.objects.get(id=project.id)
    assert_same_record(
        project_by_id(project.id), ProjectRecord(orm.id, orm.name, orm.organization_id)
    )
    assert project_by_id(uuid.uuid4()) is None


def test_project_lookup_for_members_equals_the_orm(project, member, outsider):
    record, role = project_for_member(member.pk, project.id)
    orm = Project.objects.get(id=project.id)
    assert_same_record(record, ProjectRecord(orm.id, orm.name, orm.organization_id))
    assert role == "member"
    with pytest.raises(ProjectNotFound):
        project_for_member(outsider.pk, project.id)


def test_membership_refs_equal_the_orm_in_order_in_one_query(owner, outsider):
    """What `GET /v1/me` lists (`membership_refs`): the ORM's memberships, in its order
    (organization name, then id, for equal names), values and types alike; nobody else's."""
    for name, role in [
        ("Zeta", "viewer"),
        ("Acme", "member"),
        ("Acme", "admin"),
        ("Émile", "owner"),
    ]:
        MembershipFactory(organization=OrganizationFactory(name=name), user=owner, role=role)
    MembershipFactory(organization=OrganizationFactory(name="Acme"), user=outsider, role="owner")
    orm = [
        MembershipRef(m.organization_id, m.organization.name, m.role) for m in memberships_of(owner)
    ]

    with CaptureQueriesContext(connection) as queries:
        refs = membership_refs(owner.id)

    assert len(queries) == 1
    assert len(refs) == 5
    assert refs == orm
    assert [type(value) for value in (refs[0].organization_id, refs[0].organization_name)] == [
        uuid.UUID,
        str,
    ]
    assert membership_refs(uuid.uuid4()) == []


def test_session_lookup_reads_the_session_and_its_user(owner, user_token):
    claims = tokens.decode(user_token(owner), "access")
    session = tokens.session_for_claims(claims)
    assert session == AuthSession.objects.get(id=claims["sid"])
    assert session.user == owner


@pytest.mark.parametrize("seen", [False, True], ids=["fresh", "seen, refreshed and logged in"])
def test_session_with_user_equals_the_orm_in_one_query(owner, seen):
    """The session and user the JWT check reads (`session_with_user`): every value the
    ORM reads, of the same type, in one query; the session's other columns deferred."""
    session_id = uuid.UUID(tokens.decode(services.start_session(owner).access, "access")["sid"])
    if seen:  # every nullable timestamp set, with microseconds, and a non-UTC input
        moment = datetime(2026, 12, 4, 9, 30, 1, 123456, tzinfo=timezone.get_fixed_timezone(90))
        AuthSession.objects.filter(id=session_id).update(
            last_seen_at=moment, last_refreshed_at=moment, ended_at=moment
        )
        type(owner).objects.filter(pk=owner.pk).update(
            last_login=moment, is_staff=True, email_confirmed_at=moment
        )
    orm = AuthSession.objects.select_related("user").get(id=session_id)

    with CaptureQueriesContext(connection) as queries:
        session = session_with_user(session_id)
        user = session.user
        deferred = session.get_deferred_fields()
        read = {f.attname: getattr(session, f.attname) for f in AuthSession._meta.concrete_fields
                if f.attname not in deferred}  # fmt: skip
        user_deferred = user.get_deferred_fields()
        user_read = {f.attname: getattr(user, f.attname) for f in user._meta.concrete_fields
                     if f.attname not in user_deferred}  # fmt: skip

    assert len(queries) == 1
    checked = {"id", "user_id", "expires_at", "ended_at", "refresh_jti", "password_fingerprint"}
    assert set(read) == checked | {"last_refreshed_at", "last_seen_at"}
    for name in read:
        assert (read[name], type(read[name])) == (getattr(orm, name), type(getattr(orm, name)))
    for name, value in user_read.items():
        assert (value, type(value)) == (getattr(orm.user, name), type(getattr(orm.user, name)))
    assert deferred == {"created_at", "end_reason", "ip", "user_agent"}
    assert user_deferred == {"email_code_digest", "email_code_expires_at", "session_epoch"}
    assert user.email_code_digest == orm.user.email_code_digest  # read when asked for
    assert session.created_at == orm.created_at  # a deferred column, read when asked for
    assert session_with_user(uuid.uuid4()) is None


POSTGRESQL_ONLY = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="prepared statements are PostgreSQL's"
)
PREPARED_ONLY = pytest.mark.skipif(
    connection.vendor != "postgresql"
    or not connection.settings_dict["OPTIONS"].get("prepare_threshold"),
    reason="statements are prepared with DATABASE_POOLER=none only (a step of .ci/run)",
)
PLANTED = "SELECT $1, NULL::timestamptz AS revoked_at"


def prepared_statements() -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, statement FROM pg_prepared_statements")
        return dict(cursor.fetchall())


def plant(names) -> None:
    """Statements of another release, under names this session has not used yet."""
    taken = prepared_statements()
    with connection.cursor() as cursor:
        for name in names:
            if name not in taken:
                cursor.execute(f"PREPARE {name} (text) AS {PLANTED}")


def deallocate_all() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    connection.close()  # psycopg's own list of what it prepared is gone with the statements


@PREPARED_ONLY
def test_a_direct_connection_prepares_the_key_lookup_and_still_reads_each_change(project, owner):
    """Straight to PostgreSQL, psycopg prepares the lookup once it has run a few times
    (server-side binding); the plan is kept, the row is read afresh on every call."""
    api_key, key = make_key(KeyKind.SECRET, project=project)
    digest = keyformat.digest(key)
    assert connection.connection is None or connection.connection.prepare_threshold == 5
    for _ in range(6):
        assert_same_record(key_by_digest(digest), orm_key_record(digest))
    assert any(
        name.startswith("_pg3_") and "WHERE k.digest = $1" in statement
        for name, statement in prepared_statements().items()
    )
    revoke_key(actor=owner, api_key=api_key)
    assert key_by_digest(digest).revoked_at is not None
    assert_same_record(key_by_digest(digest), orm_key_record(digest))


@PREPARED_ONLY
@pytest.mark.django_db(transaction=True)  # autocommit, as a request runs
def test_a_statement_already_under_the_name_psycopg_picks_is_never_run(api_client, project, owner):
    """psycopg names what it prepares itself, per connection, and only runs a name it has
    prepared on that connection. Should a session already hold the next name (only
    possible behind a transaction pooler, which the default settings serve without
    prepared statements), preparing fails: the request is refused with 503, it never
    reads the other statement's row."""
    api_key, key = make_key(KeyKind.SECRET, project=project)
    revoke_key(actor=owner, api_key=api_key)
    plant(f"_pg3_{n}" for n in range(500))
    try:
        answers = {api_client.get("/v1/probe/auth", **bearer(key)).status_code for _ in range(8)}
        assert answers <= {401, 503} and 503 in answers  # 401: KEY_REVOKED, before preparing
        assert 200 not in answers
    finally:
        deallocate_all()


@POSTGRESQL_ONLY
@pytest.mark.django_db(transaction=True)
def test_without_prepared_statements_a_pooled_backend_holding_others_reads_the_right_row(
    api_client, project, owner
):
    """By default (and so behind PgBouncer in transaction mode) nothing is prepared
    (`prepare_threshold` None, tests/test_settings.py), so the statements another release
    left on a shared backend, under any name, can never be run by a lookup: a revoked key
    stays revoked however often it is tried."""
    api_key, key = make_key(KeyKind.SECRET, project=project)
    revoke_key(actor=owner, api_key=api_key)
    deallocate_all()
    connection.ensure_connection()
    connection.connection.prepare_threshold = None  # what the default settings set
    plant(["sigsentry_key_by_digest", "sigsentry_project_by_id"])
    plant(f"_pg3_{n}" for n in range(50))
    try:
        digest = keyformat.digest(key)
        for _ in range(8):
            assert_same_record(key_by_digest(digest), orm_key_record(digest))
            response = api_client.get("/v1/probe/auth", **bearer(key))
            assert response.json()["error"]["code"] == "KEY_REVOKED"
        assert set(prepared_statements().values()) == {
            f"PREPARE {name} (text) AS {PLANTED}" for name in prepared_statements()
        }
    finally:
        deallocate_all()


@PREPARED_ONLY
@pytest.mark.django_db(transaction=True)
def test_a_plan_made_stale_by_a_migration_costs_one_request_not_a_minute(api_client, project):
    """A migration in another process changes the type of a column the prepared key lookup
    returns: PostgreSQL refuses that plan for the rest of the session. The request that meets
    it gets 503 (fail closed) and ends the session; the next one prepares afresh."""
    _, key = make_key(KeyKind.SECRET, project=project)
    for _ in range(6):
        assert api_client.get("/v1/probe/auth", **bearer(key)).status_code == 200
    assert any("WHERE k.digest = $1" in sql for sql in prepared_statements().values())
    settings = connection.get_connection_params()
    migration = psycopg.connect(**settings, autocommit=True)
    table = ApiKey._meta.db_table
    try:
        migration.execute(f"ALTER TABLE {table} ALTER COLUMN name TYPE varchar(101)")
        first = api_client.get("/v1/probe/auth", **bearer(key))
        assert first.status_code == 503
        assert first.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
        assert [api_client.get("/v1/probe/auth", **bearer(key)).status_code for _ in range(7)] == [
            200
        ] * 7
    finally:
        migration.execute(f"ALTER TABLE {table} ALTER COLUMN name TYPE varchar(100)")
        migration.close()
        connection.close()
