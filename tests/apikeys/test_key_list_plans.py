"""A page of keys reads that page, not the collection (PostgreSQL's plans).

A project with many keys of one kind: listing a page of them, or of the project's
other collection, or opening its key page, must not walk every key. The module seeds
10,000 secret keys once, lets PostgreSQL's planner see them (ANALYZE), and reads the plan of
every query the request made: no node may touch more rows than a page holds. This
failed when the list carried an EXISTS for "was it rolled" (planned as a hashed subplan
over every key of every tenant), when the project index did not hold the key type (an
SDK-key page filtered through all the secret keys), and when the legacy banner's count
had no index of its own.
"""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from core.permissions import Role
from tests.factories import (
    MembershipFactory,
    OrganizationFactory,
    ProjectFactory,
    bulk_secret_keys,
    make_key,
)
from tests.orgs.helpers import collection_url, key_url, user_client
from tests.pages import logged_in

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's query plans"),
]

#: Enough that walking them costs the planner clearly more than a page's lookups: at 2,000,
#: the rolled keys' `replaces_id IN (50 ids)` was a seq scan at a cost of 92 against 94 for
#: the index, and CI drew the seq scan once (191 against 462 at 10,000).
MANY = 10_000
#: The most rows any plan node may touch: a page (50, and one more to know there is a
#: next), with room for the page's own lookups (creator, membership, project).
PAGE_ROWS = 200


@pytest.fixture(scope="module")
def _crowded(django_db_setup, django_db_blocker):
    """An owner's project with MANY secret keys (one of them rolled) and no SDK key, made
    once for the module (~1.5 s of CPU each time) in a transaction around its tests, rolled
    back after them: each test's own transaction (a savepoint in it) sees the rows and
    takes back what the test wrote, and no other module ever sees them."""
    with django_db_blocker.unblock(), transaction.atomic():
        project = ProjectFactory(organization=OrganizationFactory(name="Acme"), name="Checkout")
        owner = MembershipFactory(organization=project.organization, role=Role.OWNER).user
        bulk_secret_keys(project, MANY)
        old, _ = make_key(KeyKind.SECRET, project=project)
        make_key(KeyKind.SECRET, project=project, replaces=old)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE apikeys_apikey")
        yield owner, project
        transaction.set_rollback(True)


@pytest.fixture
def owner(_crowded, db):
    return _crowded[0]


@pytest.fixture
def crowded_project(_crowded, db):
    """The module's project with MANY secret keys (one of them rolled) and no SDK key."""
    return _crowded[1]


def rows_touched(sql: str) -> list[tuple[str, int]]:
    """(node, rows) for every node of the query's actual plan: rows returned plus rows a
    filter removed, once per loop."""
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql)
        plan = cursor.fetchone()[0][0]["Plan"]
    found, nodes = [], [plan]
    while nodes:
        node = nodes.pop()
        rows = (node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)) * node.get(
            "Actual Loops", 1
        )
        found.append((f"{node['Node Type']} {node.get('Relation Name', '')}".strip(), rows))
        nodes.extend(node.get("Plans", []))
    return found


def assert_reads_a_page(client, url: str, *, skip_count: bool = False) -> None:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    for query in queries.captured_queries:
        sql = query["sql"]
        if not sql.startswith("SELECT") or (skip_count and sql.startswith("SELECT COUNT(*)")):
            continue
        heavy = [(node, rows) for node, rows in rows_touched(sql) if rows > PAGE_ROWS]
        assert not heavy, (heavy, sql[:400])


@pytest.mark.parametrize("kind", [KeyKind.SECRET, KeyKind.PUBLIC], ids=["api-keys", "sdk-keys"])
def test_a_page_of_the_api_reads_a_page(owner, crowded_project, kind):
    assert_reads_a_page(user_client(owner), collection_url(kind, crowded_project))


def test_one_key_of_a_crowded_collection_reads_one_key(owner, crowded_project):
    api_key = ApiKey.objects.filter(project=crowded_project).first()
    assert_reads_a_page(user_client(owner), key_url(KeyKind.SECRET, crowded_project, api_key))


@pytest.mark.parametrize("collection", ["api-keys", "sdk-keys"])
def test_a_key_page_reads_a_page_besides_its_page_count(owner, crowded_project, collection):
    # The page numbers need the collection's size: that COUNT(*) reads it, by design.
    url = f"/projects/{crowded_project.id}/{collection}/"
    assert_reads_a_page(logged_in(owner), url, skip_count=True)
    page = logged_in(owner).get(url).content.decode()
    if collection == "api-keys":
        assert page.count('>Rolled<span class="visually-hidden">:') == 1
