"""Named fixtures: an organization with a project, its owner, admin, member and
viewer, and an outsider who belongs to another organization."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from apps.accounts import services as account_services
from apps.orgs.permissions import Role
from tests.factories import MembershipFactory, OrganizationFactory, ProjectFactory


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def organization(db):
    return OrganizationFactory(name="Acme")


@pytest.fixture
def project(organization):
    return ProjectFactory(organization=organization, name="Checkout")


@pytest.fixture
def other_project(organization):
    return ProjectFactory(organization=organization, name="Billing")


def _member(organization, role):
    return MembershipFactory(organization=organization, role=role).user


@pytest.fixture
def owner(organization):
    return _member(organization, Role.OWNER)


@pytest.fixture
def admin(organization):
    return _member(organization, Role.ADMIN)


@pytest.fixture
def member(organization):
    return _member(organization, Role.MEMBER)


@pytest.fixture
def viewer(organization):
    return _member(organization, Role.VIEWER)


@pytest.fixture
def outsider(db):
    other = OrganizationFactory(name="Elsewhere")
    ProjectFactory(organization=other, name="Theirs")
    return _member(other, Role.OWNER)


@pytest.fixture
def api_client():
    return APIClient()


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def access_token_for(user) -> str:
    return account_services.start_session(user).access


@pytest.fixture
def user_token():
    return access_token_for


@pytest.fixture(scope="session", autouse=True)
def _servers_via_pgbouncer(request):
    """With TEST_SERVERS_VIA_PGBOUNCER on (and PostgreSQL), one PgBouncer in transaction mode
    in front of the test database for the session; tests/servers.py points servers at it.

    Started after the test database exists and stopped before it is dropped (PgBouncer
    keeps server connections open, and DROP DATABASE refuses while any is).
    """
    from django.db import connection

    from tests import pgbouncer

    if not pgbouncer.servers_via_pgbouncer() or connection.vendor != "postgresql":
        yield None
        return
    request.getfixturevalue("django_db_setup")
    settings = connection.settings_dict
    bouncer = pgbouncer.PgBouncer(
        (settings.get("HOST") or "127.0.0.1", int(settings.get("PORT") or 5432))
    ).start()
    pgbouncer.session_pgbouncer = bouncer
    yield bouncer
    pgbouncer.session_pgbouncer = None
    bouncer.close()


@pytest.fixture(scope="session")
def gunicorn_server(django_db_setup, django_db_blocker):
    """One gunicorn (2 workers) on the test database for the whole session.

    Tests that use it must commit their data: depend on `live_url`, which
    brings `transactional_db`.
    """
    from tests.servers import GunicornServer

    with django_db_blocker.unblock():
        server = GunicornServer().start()
    yield server
    server.stop()


@pytest.fixture
def live_url(gunicorn_server, transactional_db):
    return gunicorn_server.url
