"""Races: revocation under load, concurrent refreshes, concurrent demotions and removals.

PostgreSQL only (see `requires_postgres`): SQLite serialises every writer, so
these races cannot happen there and a passing test would prove nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from django.db import connection

from apps.accounts import services as account_services
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.services import revoke_key
from apps.orgs import services as org_services
from apps.orgs.models import Membership
from core.errors import LastOwner, PermissionDenied, TokenInvalid
from core.permissions import Role
from tests.factories import MembershipFactory, OrganizationFactory, make_key
from tests.reliability.conftest import requires_postgres
from tests.reliability.helpers import bearer, call

pytestmark = [requires_postgres, pytest.mark.slow]

ROUNDS = 8


def run_concurrently(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls in threads released at the same instant; each result or raised exception."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int, fn: Callable[[], Any]) -> None:
        try:
            barrier.wait()
            results[index] = fn()
        except Exception as exc:
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def test_requests_started_after_a_revocation_commits_are_rejected(
    transactional_db, project, owner, start_server
):
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)
    server = start_server(workers=3)
    revoked_at: list[float] = []
    replies = []
    lock = threading.Lock()
    after_revoke_per_thread = 6  # few enough to stay under the failed-credential throttle

    through = [threading.Event() for _ in range(4)]  # each client had a 200 before revoking

    def hammer(got_through: threading.Event) -> None:
        seen_after = 0
        deadline = time.monotonic() + 20
        while seen_after < after_revoke_per_thread and time.monotonic() < deadline:
            reply = call(server.url, "GET", "/v1/me", headers=bearer(plaintext))
            with lock:
                replies.append(reply)
            if reply.status == 200:
                got_through.set()
            if revoked_at and reply.started_at > revoked_at[0]:
                seen_after += 1

    threads = [threading.Thread(target=hammer, args=(event,)) for event in through]
    for thread in threads:
        thread.start()
    for event in through:
        assert event.wait(timeout=20), "a client never got a 200 before the revocation"
    revoke_key(actor=owner, api_key=api_key)
    revoked_at.append(time.monotonic())  # the revocation has committed by now
    for thread in threads:
        thread.join(timeout=30)

    assert {r.status for r in replies} <= {200, 401}, [r.body for r in replies if r.status >= 500]
    before = [r for r in replies if r.started_at < revoked_at[0]]
    after = [r for r in replies if r.started_at > revoked_at[0]]
    assert any(r.status == 200 for r in before)
    assert len(after) >= 4 * after_revoke_per_thread
    assert {(r.status, r.code) for r in after} == {(401, "KEY_REVOKED")}


def test_two_concurrent_refreshes_of_one_token_exactly_one_wins(transactional_db, owner):
    for _ in range(ROUNDS):
        refresh = account_services.start_session(owner).refresh
        rotate = partial(account_services.refresh, refresh_token=refresh)
        results = run_concurrently(rotate, rotate)
        winners = [r for r in results if not isinstance(r, Exception)]
        assert len(winners) == 1, results
        assert all(isinstance(r, TokenInvalid) for r in results if isinstance(r, Exception))
        with pytest.raises(TokenInvalid):
            account_services.refresh(refresh_token=refresh)


def _two_owners() -> tuple[Membership, Membership]:
    organization = OrganizationFactory()
    first = MembershipFactory(organization=organization, role=Role.OWNER)
    second = MembershipFactory(organization=organization, role=Role.OWNER)
    return first, second


def _owner_count(first: Membership) -> int:
    return Membership.objects.filter(organization_id=first.organization_id, role=Role.OWNER).count()


def _assert_one_won_one_refused(results: list[Any], first: Membership) -> None:
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(refused) == 1, results
    # The loser is refused either as the last owner, or because the winner's change
    # already took away its own owner role (roles are re-read under the lock).
    assert isinstance(refused[0], LastOwner | PermissionDenied), refused
    assert _owner_count(first) == 1


def test_concurrent_mutual_demotions_keep_an_owner(transactional_db):
    for _ in range(ROUNDS):
        first, second = _two_owners()
        results = run_concurrently(
            partial(
                org_services.change_member_role,
                actor_membership=first,
                target=second,
                role=Role.ADMIN,
            ),
            partial(
                org_services.change_member_role,
                actor_membership=second,
                target=first,
                role=Role.MEMBER,
            ),
        )
        _assert_one_won_one_refused(results, first)


def test_concurrent_self_demotions_keep_an_owner(transactional_db):
    for _ in range(ROUNDS):
        first, second = _two_owners()
        results = run_concurrently(
            *[
                (
                    lambda m=m: org_services.change_member_role(
                        actor_membership=m, target=m, role=Role.VIEWER
                    )
                )
                for m in (first, second)
            ]
        )
        _assert_one_won_one_refused(results, first)


def test_concurrent_mutual_removals_keep_an_owner(transactional_db):
    for _ in range(ROUNDS):
        first, second = _two_owners()
        results = run_concurrently(
            partial(org_services.remove_member, actor_membership=first, target=second),
            partial(org_services.remove_member, actor_membership=second, target=first),
        )
        _assert_one_won_one_refused(results, first)


def test_concurrent_removal_and_demotion_keep_an_owner(transactional_db):
    for _ in range(ROUNDS):
        first, second = _two_owners()
        results = run_concurrently(
            partial(org_services.remove_member, actor_membership=first, target=first),
            partial(
                org_services.change_member_role,
                actor_membership=second,
                target=second,
                role=Role.ADMIN,
            ),
        )
        _assert_one_won_one_refused(results, first)


def test_many_concurrent_owner_changes_never_leave_an_organization_ownerless(transactional_db):
    organization = OrganizationFactory()
    owners = [MembershipFactory(organization=organization, role=Role.OWNER) for _ in range(4)]
    results = run_concurrently(
        *[
            (
                lambda m=m: org_services.change_member_role(
                    actor_membership=m, target=m, role=Role.MEMBER
                )
            )
            for m in owners
        ]
    )
    assert sum(isinstance(r, LastOwner) for r in results) == 1, results
    assert not [r for r in results if isinstance(r, Exception) and not isinstance(r, LastOwner)]
    assert _owner_count(owners[0]) == 1
