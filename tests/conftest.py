"""Named fixtures: an organization with a project, its owner, admin, member and
viewer, and an outsider who belongs to another organization."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from apps.accounts import services as account_services
from core.permissions import Role
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


@pytest.fixture(scope="session")
def smtp_server():
    """One real SMTP server (aiosmtpd) for the whole session; see `mailbox`."""
    from tests.mailbox import SmtpMailbox

    server = SmtpMailbox().start()
    yield server
    server.stop()


@pytest.fixture
def mailbox(smtp_server, settings):
    """The session's SMTP server, emptied, with Django's mail sent to it (not to locmem)."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = smtp_server.port
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    smtp_server.clear()
    yield smtp_server
    smtp_server.clear()


@pytest.fixture(scope="session")
def gunicorn_server(django_db_setup, django_db_blocker, smtp_server):
    """One gunicorn (2 workers) on the test database for the whole session.

    It mails through the session's SMTP server, with links to itself. Tests
    that use it must commit their data: depend on `live_url`, which brings
    `transactional_db` (and `mailbox` to read what it sent).
    """
    from tests.servers import GunicornServer

    server = GunicornServer(env={"EMAIL_URL": smtp_server.url})
    server.env["SITE_URL"] = server.url
    with django_db_blocker.unblock():
        server.start()
    yield server
    server.stop()


@pytest.fixture
def live_url(gunicorn_server, transactional_db):
    return gunicorn_server.url
