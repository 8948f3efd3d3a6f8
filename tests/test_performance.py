"""The authentication hot path: queries per request, and the raw lookups equal the ORM.

Timings live in bench/ (`make bench`); these tests pin what the timings rely
on and what must never regress: one query per project-key request, at most
two for an organization key on a project-scoped endpoint, none for a
credential rejected by its shape, and a raw SQL lookup that returns exactly
what the ORM would.
"""

from __future__ import annotations

import copy
import pickle
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models.signals import post_init
from django.test.utils import CaptureQueriesContext
from django.urls import path
from django.utils import timezone
from rest_framework.response import Response

from apps.accounts import tokens
from apps.accounts.models import AuthSession
from apps.apikeys import keyformat
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from apps.apikeys.selectors import KEY_FIELDS_FOR_REQUESTS, key_by_digest
from apps.apikeys.services import revoke_key
from apps.orgs.models import Organization
from apps.orgs.permissions import Permission
from apps.projects.models import Project
from core.api import ApiView, ProjectScopedView
from core.rawselect import _plain_literal
from sigsentry.urls import urlpatterns as product_urlpatterns
from tests.conftest import bearer
from tests.factories import make_key, make_legacy_key

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


# The raw lookups return exactly what the ORM returns.


def field_values(instance) -> dict:
    """Every loaded column, with its Python type (a UUID is not its hex string).

    Read from the instance's attributes: reading a deferred field would load it.
    """
    loaded = instance.__dict__
    return {
        field.attname: (loaded[field.attname], type(loaded[field.attname]))
        for field in type(instance)._meta.concrete_fields
        if field.attname in loaded
    }


def assert_same_instance(raw, orm) -> None:
    assert type(raw) is type(orm)
    assert raw.get_deferred_fields() == orm.get_deferred_fields()
    assert field_values(raw) == field_values(orm)
    assert (raw._state.db, raw._state.adding) == (orm._state.db, orm._state.adding)
    assert raw._state.fields_cache.keys() == orm._state.fields_cache.keys()
    for name, related in orm._state.fields_cache.items():
        if related is None:
            assert raw._state.fields_cache[name] is None
        else:
            raw_related = raw._state.fields_cache[name]
            assert raw_related.get_deferred_fields() == related.get_deferred_fields()
            assert field_values(raw_related) == field_values(related)


def orm_key(digest: str) -> ApiKey | None:
    return (
        ApiKey.objects.select_related("organization", "project")
        .only(*KEY_FIELDS_FOR_REQUESTS)
        .filter(digest=digest)
        .first()
    )


@pytest.mark.parametrize("kind", [KeyKind.SECRET, KeyKind.PUBLIC, KeyKind.ORGANIZATION])
def test_key_by_digest_equals_the_orm(project, owner, kind):
    api_key, key = make_key(
        kind,
        project=project,
        actor=owner,
        expires_at=timezone.now() + timedelta(days=3),
        **({"allowed_origins": ["https://app.example.com"]} if kind is KeyKind.PUBLIC else {}),
    )
    ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=timezone.now())
    digest = keyformat.digest(key)
    raw = key_by_digest(digest)
    assert_same_instance(raw, orm_key(digest))
    assert (raw.project is None) == (kind is KeyKind.ORGANIZATION)
    with CaptureQueriesContext(connection) as ctx:
        assert raw.organization.name == "Acme"
        assert raw.project is None or raw.project.name == project.name
    assert ctx.captured_queries == []
    # A field left out for requests is deferred: it loads, as the ORM would load it.
    assert "created_at" in raw.get_deferred_fields()
    assert raw.created_at == api_key.created_at


def test_key_by_digest_equals_the_orm_for_a_revoked_legacy_key(project, owner):
    api_key, key = make_legacy_key(project)
    revoke_key(actor=owner, api_key=api_key)
    digest = keyformat.digest(key)
    assert_same_instance(key_by_digest(digest), orm_key(digest))


def test_key_by_digest_compiles_again_when_the_time_zone_settings_change(project, settings):
    """The statement and its converters depend on USE_TZ: a changed setting is followed."""
    api_key, key = make_key(
        KeyKind.SECRET, project=project, expires_at=timezone.now() + timedelta(1)
    )
    digest = keyformat.digest(key)
    assert key_by_digest(digest).expires_at.tzinfo is not None
    settings.USE_TZ = False
    raw = key_by_digest(digest)
    assert raw.expires_at.tzinfo is None
    assert_same_instance(raw, orm_key(digest))
    settings.USE_TZ = True
    assert key_by_digest(digest).expires_at == api_key.expires_at


def test_each_lookup_gets_permission_lists_of_its_own(project):
    """JSON arrays are parsed once per process, but a caller may change its list safely."""
    _api_key, key = make_key(KeyKind.SECRET, project=project)
    digest = keyformat.digest(key)
    first = key_by_digest(digest)
    first.permissions.append("config:write")
    first.allowed_origins.append("https://evil.example")
    second = key_by_digest(digest)
    assert second.permissions == orm_key(digest).permissions
    assert second.allowed_origins == []
    assert second.permissions is not first.permissions


@pytest.mark.parametrize(
    "text", ['["a", "b"]', '{"a": ["b"]}', '[1, "a"]', '[["a"]]', '"a"', "null", "[]"]
)
def test_memoized_json_converts_like_the_field(text):
    from core.rawselect import _MemoizedJsonArrays

    field = ApiKey._meta.get_field("permissions")
    memo = _MemoizedJsonArrays(field.from_db_value)
    once, twice = memo(text, None, connection), memo(text, None, connection)
    assert once == twice == field.from_db_value(text, None, connection)
    if isinstance(once, list | dict):
        assert once is not twice


def test_related_rows_become_instances_when_first_read(project, django_assert_num_queries):
    """The organization and project are built from the row on first read: no query, kept."""
    _api_key, key = make_key(KeyKind.SECRET, project=project)
    raw = key_by_digest(keyformat.digest(key))
    cache = raw._state.fields_cache
    assert dict.__len__(cache) == 0  # nothing built yet
    project_field = ApiKey._meta.get_field("project")
    with django_assert_num_queries(0):
        assert project_field.is_cached(raw)
        assert raw.project is raw.project
        assert raw.project.name == project.name
        assert dict.__len__(cache) == 1
        clone = pickle.loads(pickle.dumps(raw))  # builds the rest, copies plain values
        assert clone.organization.name == raw.organization.name == "Acme"
        assert copy.deepcopy(raw).project.id == project.id
    other = Project.objects.create(organization=project.organization, name="Other")
    fresh = key_by_digest(keyformat.digest(key))
    fresh.project = other  # an assignment replaces what was pending
    assert fresh.project is other
    fresh = key_by_digest(keyformat.digest(key))
    project_field.delete_cached_value(fresh)  # as refresh_from_db does: read again from the db
    assert not project_field.is_cached(fresh)
    with django_assert_num_queries(1):
        assert fresh.project == project


def test_key_by_digest_of_an_unknown_digest_is_none(project):
    make_key(KeyKind.SECRET, project=project)
    assert key_by_digest(keyformat.digest(keyformat.generate(KeyKind.SECRET))) is None


def test_session_lookup_equals_the_orm(owner, user_token):
    claims = tokens.decode(user_token(owner), "access")
    raw = tokens.session_for_claims(claims)
    orm = AuthSession.objects.select_related("user").filter(id=claims["sid"]).first()
    assert_same_instance(raw, orm)
    assert raw.user.email == owner.email


def test_project_lookup_for_org_keys_equals_the_orm(project):
    from apps.orgs.access import _PROJECT_BY_ID

    raw = _PROJECT_BY_ID.get(project.id)
    orm = Project.objects.select_related("organization").filter(id=project.id).first()
    assert_same_instance(raw, orm)
    assert _PROJECT_BY_ID.get(uuid.uuid4()) is None


@pytest.mark.parametrize("kind", [KeyKind.SECRET, KeyKind.ORGANIZATION])
def test_lookup_with_init_receivers_builds_instances_through_from_db(project, kind):
    """With pre_init/post_init receivers the instances go through Model.__init__ (deferred too)."""
    _api_key, key = make_key(kind, project=project)
    digest = keyformat.digest(key)
    seen = []

    def receiver(sender, instance, **kwargs):
        seen.append((sender, instance.get_deferred_fields()))

    for model in (ApiKey, Organization, Project):
        post_init.connect(receiver, sender=model)
    try:
        raw = key_by_digest(digest)
        from_raw, seen[:] = seen[:], []
        orm = orm_key(digest)
        from_orm = seen[:]
    finally:
        for model in (ApiKey, Organization, Project):
            post_init.disconnect(receiver, sender=model)
    assert_same_instance(raw, orm)
    assert from_raw == from_orm
    assert ApiKey in {sender for sender, _ in from_raw}


# PostgreSQL keeps the statement prepared per session; it recovers when the server lost it.


needs_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="prepared statements are PostgreSQL's"
)


@needs_postgresql
@pytest.mark.django_db(transaction=True)
def test_lookup_prepares_again_when_the_server_forgot_the_statement(project):
    _api_key, key = make_key(KeyKind.SECRET, project=project)
    digest = keyformat.digest(key)
    assert key_by_digest(digest) is not None
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")  # as a pooler handing over another backend would
    assert key_by_digest(digest).digest == digest


@needs_postgresql
@pytest.mark.django_db(transaction=True)
def test_lookup_executes_when_the_server_already_has_the_statement(project):
    from apps.apikeys import selectors

    _api_key, key = make_key(KeyKind.SECRET, project=project)
    digest = keyformat.digest(key)
    assert key_by_digest(digest) is not None
    selectors._KEY_BY_DIGEST._prepared_on.clear()  # a new process on a pooled backend
    assert key_by_digest(digest).digest == digest


@needs_postgresql
@pytest.mark.django_db(transaction=True)
def test_first_lookup_on_a_new_connection_prepares_in_the_same_query(project):
    _api_key, key = make_key(KeyKind.SECRET, project=project)
    digest = keyformat.digest(key)
    connection.close()
    with CaptureQueriesContext(connection) as ctx:
        assert key_by_digest(digest).digest == digest
    assert [q["sql"].split(" ", 1)[0] for q in ctx.captured_queries] == ["PREPARE"]


@needs_postgresql
def test_statement_is_prepared_once_per_database_session(project):
    _api_key, key = make_key(KeyKind.SECRET, project=project)
    digest = keyformat.digest(key)
    key_by_digest(digest)
    with CaptureQueriesContext(connection) as ctx:
        key_by_digest(digest)
        key_by_digest(digest)
    assert [q["sql"].split(" ", 1)[0] for q in ctx.captured_queries] == ["EXECUTE", "EXECUTE"]


@needs_postgresql
@pytest.mark.parametrize(
    "digest", ["' OR '1'='1", "abc'; DROP TABLE apikeys_apikey; --", "ä" * 64, "a\\'b", ""]
)
def test_a_lookup_value_that_needs_quoting_goes_through_the_driver(project, digest):
    """Only ASCII letters and digits are written as a literal; anything else is a parameter."""
    _api_key, key = make_key(KeyKind.SECRET, project=project)
    key_by_digest(keyformat.digest(key))  # prepared: later lookups take the literal path
    with CaptureQueriesContext(connection) as ctx:
        assert key_by_digest(digest) is None
        assert key_by_digest(keyformat.digest(key)) is not None
    assert ApiKey.objects.count() == 1
    assert ctx.captured_queries[1]["sql"].endswith(f"('{keyformat.digest(key)}')")
    assert _plain_literal(digest) is None


def test_only_values_quoting_cannot_change_are_written_as_literals():
    assert _plain_literal("0a" * 32) == "'" + "0a" * 32 + "'"
    some_id = uuid.uuid4()
    assert _plain_literal(some_id) == f"'{some_id}'"
    for value in ("a'b", "a b", "a-b", "ä", "", "a\\b", 7, None, b"ab", some_id.hex.upper() + "'"):
        assert _plain_literal(value) is None


@needs_postgresql
def test_lookups_by_uuid_write_the_uuid_as_a_literal(owner, user_token, project):
    from apps.orgs.access import _PROJECT_BY_ID

    _PROJECT_BY_ID.get(project.id)
    with CaptureQueriesContext(connection) as ctx:
        assert _PROJECT_BY_ID.get(project.id).name == project.name
        assert _PROJECT_BY_ID.get(uuid.uuid4()) is None
    assert ctx.captured_queries[0]["sql"].endswith(f"('{project.id}')")
