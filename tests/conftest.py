"""Named fixtures: an organization with a project, its owner, admin, member and
viewer, and an outsider who belongs to another organization.

Also the clock: `--clock 2027-06-01` runs the suite with the clock moved (CI does, for
the date-sensitive tests), and `before_the_sunset` pins the legacy-key moments."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import redis
import time_machine
from django.core.cache import cache
from rest_framework.test import APIClient

from apps.accounts import services as account_services
from core import failopen, mailserver, throttling
from core.permissions import Role
from tests.factories import MembershipFactory, OrganizationFactory, ProjectFactory


def pytest_addoption(parser):
    parser.addoption(
        "--clock",
        metavar="ISO_DATE",
        help="run with the clock moved to this UTC moment (still ticking; the servers the "
        "tests start keep it too), e.g. 2027-06-01: no test may depend on today's date",
    )


def pytest_configure(config):
    moment = config.getoption("--clock")
    if moment:
        destination = datetime.fromisoformat(moment)
        if destination.tzinfo is None:
            destination = destination.replace(tzinfo=UTC)
        traveller = time_machine.travel(destination, tick=True)
        traveller.start()
        config.add_cleanup(traveller.stop)


# pytest-django's ways into the database: its marker, or one of these fixtures.
_DATABASE_FIXTURES = frozenset(
    {"db", "transactional_db", "django_db_reset_sequences", "django_db_serialized_rollback"}
)


def pytest_collection_modifyitems(items):
    """Mark `database` the tests that may reach the database (pytest-django blocks it for the
    rest): CI's DATABASE_POOLER=none step, which changes nothing else, runs only those."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if item.get_closest_marker("django_db") or _DATABASE_FIXTURES.intersection(fixtures):
            item.add_marker("database")


#: LEGACY_KEYS_DEPRECATED_AT and LEGACY_KEYS_SUNSET_AT as SPEC §8 sets them, written out.
LEGACY_DEPRECATED_AT = datetime(2026, 11, 26, tzinfo=UTC)
LEGACY_SUNSET_AT = datetime(2027, 5, 26, tzinfo=UTC)
#: A moment between the two: legacy keys work and their responses carry the headers.
BEFORE_THE_SUNSET = datetime(2027, 1, 15, 12, tzinfo=UTC)


@pytest.fixture
def before_the_sunset(settings, time_machine):
    """Legacy keys still work, on any day the suite runs: the two legacy moments pinned to
    SPEC §8's defaults and the clock moved between them (it keeps ticking).

    Apply it with `@pytest.mark.usefixtures("before_the_sunset")` so that it runs before
    the test's own fixtures: sessions and tokens minted earlier would carry the real time.
    A server the test starts itself keeps the moved clock (tests/servers.py); the shared
    `live_url` server, started before, does not.
    """
    settings.LEGACY_KEYS_DEPRECATED_AT = LEGACY_DEPRECATED_AT
    settings.LEGACY_KEYS_SUNSET_AT = LEGACY_SUNSET_AT
    time_machine.move_to(BEFORE_THE_SUNSET)


class ThrottleClock:
    """Stands in for `core.throttling.clock`: still, until `advance` moves it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


#: The first second of a window of every period the throttle uses, a minute to a day.
WINDOW_START = 1_799_971_200  # 2027-01-15T00:00:00Z


@pytest.fixture
def throttle_clock(monkeypatch) -> ThrottleClock:
    """The throttle's clock held at the first second of a window, for the tests that expect
    a 429: no window boundary passes mid-test, wherever in the minute the test runs."""
    clock = ThrottleClock(WINDOW_START)
    monkeypatch.setattr(throttling, "clock", clock)
    return clock


def _clear_shared_cache(tries: int = 3) -> None:
    """`cache.clear()`: FLUSHDB on the shared Redis when REDIS_URL is set, under the
    product's 250 ms timeout. Under CI's load (three suites on two cores) one took longer
    and failed a test's teardown: tried again, as a test's setup, not the product, may."""
    for attempt in range(tries):
        try:
            cache.clear()
            return
        except redis.exceptions.TimeoutError:
            if attempt == tries - 1:
                raise


@pytest.fixture(autouse=True)
def _clear_cache():
    _clear_shared_cache()
    # A test that ran Redis steps outside a request may leave this thread's "gave up on
    # Redis" mark set (core.failopen; a request clears it when it starts), or the process
    # resting from Redis after a step gave up: not the next test.
    failopen.new_request()
    failopen.end_rest()
    # Nor a mail server one test made fail (core.mailserver): the next test's sends try.
    mailserver.forget()
    yield
    _clear_shared_cache()


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
    with django_db_blocker.unblock():
        server = live_server(smtp_server)
    yield server
    server.stop()


def live_server(smtp_server):
    """A started gunicorn as the dashboard's tests use it: mailing through the session's
    SMTP server, with links to itself, on the test process's clock (moved or not)."""
    from django.conf import settings

    from tests.servers import GunicornServer

    env = {"EMAIL_URL": smtp_server.url}
    if not settings.REDIS_URL:  # its counters outlive the tests: tests/session_server_settings.py
        env["DJANGO_SETTINGS_MODULE"] = "tests.session_server_settings"
    server = GunicornServer(env=env)
    server.env["SITE_URL"] = server.url
    return server.start()


@pytest.fixture
def live_url(gunicorn_server, transactional_db):
    return gunicorn_server.url
