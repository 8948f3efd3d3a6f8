"""Account deletions at the same moment as each other (PostgreSQL: row locks)."""

from __future__ import annotations

import pytest
from django.db import connection

from apps.accounts import services
from apps.accounts.models import RecoveryCode, User
from apps.audit.models import AuditEvent
from apps.audit.services import Action
from apps.invitations.services import accept_invitation, invite_member
from apps.orgs.access import as_manager
from apps.orgs.models import Membership, Organization
from apps.orgs.services import add_member, record_audit_log_exported
from core.errors import LastOwner, NotFound, ValidationFailed
from core.permissions import Role
from tests.accounts.test_email_confirmation import invitations_token_of
from tests.accounts.test_two_factor import enable_two_factor
from tests.factories import PASSWORD, MembershipFactory, OrganizationFactory
from tests.races import Call, race

pytestmark = pytest.mark.django_db(transaction=True)

MEMBERSHIP_TABLE = Membership._meta.db_table


@pytest.fixture(autouse=True)
def _concurrent_database():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: row locks and concurrent writers")


def memberships_locked(sql: str) -> bool:
    return sql.startswith("SELECT") and MEMBERSHIP_TABLE in sql and "FOR UPDATE" in sql


def deletion_of(user, *, held: bool = False) -> Call:
    """The deletion of `user`'s account on a connection of its own; `held`: stopped just
    after its memberships are locked, until `race` lets it go."""
    return Call(
        lambda: services.delete_account(actor=user, password=PASSWORD),
        memberships_locked if held else None,
    )


def test_two_owners_deleting_their_accounts_at_once_leave_the_organization_one(
    organization, owner, member
):
    """Each saw the other as the owner who stays: both went, and the organization kept a
    member and no owner (SPEC §4.2). The second waits for the first's locks, then finds
    itself the last owner."""
    other = MembershipFactory(organization=organization, role=Role.OWNER).user
    first, second = deletion_of(owner, held=True), deletion_of(other)

    race(first, second, second_waits=True)

    assert first.error is None, first.error
    assert isinstance(second.error, LastOwner), second.error
    assert not User.objects.filter(pk=owner.pk).exists()
    assert Membership.objects.filter(organization=organization, role=Role.OWNER).count() == 1


def test_a_double_submit_deletes_once_and_the_second_changes_nothing(organization, member):
    first, second = deletion_of(member, held=True), deletion_of(member)

    race(first, second, second_waits=True)

    assert first.error is None and second.error is None, (first.error, second.error)
    assert first.result is not None and second.result is None
    assert not User.objects.filter(pk=member.pk).exists()


def organizations_locked(sql: str) -> bool:
    return sql.startswith("SELECT") and Organization._meta.db_table in sql and "FOR NO KEY" in sql


def test_a_manager_change_at_the_same_moment_waits_for_the_deletion_without_a_deadlock(
    organization, owner
):
    """A manager's change locks the organization, then the membership (`locked_role`); the
    deletion took the memberships first and the organization last, so each waited for the
    other (PostgreSQL's deadlock error, a 503). It takes the organizations first too."""

    def export_recorded():
        with as_manager(owner, organization.id):
            record_audit_log_exported(
                organization, actor=owner, request=None, file_format="csv", action=None
            )

    change = Call(export_recorded, organizations_locked)
    deletion = deletion_of(owner)

    race(change, deletion, second_waits=True)

    assert change.error is None, change.error
    assert deletion.error is None, deletion.error
    assert not Organization.objects.filter(pk=organization.pk).exists()


def test_a_deletion_refused_by_another_owners_of_the_same_moment_spends_no_recovery_code(
    organization, owner, member
):
    """Both saw the other as the owner who stays; the second, refused once the first
    committed, had already spent its recovery code (and been mailed that it had)."""
    other = MembershipFactory(organization=organization, role=Role.OWNER).user
    _secret, codes = enable_two_factor(owner)
    first = deletion_of(other, held=True)
    second = Call(lambda: services.delete_account(actor=owner, password=PASSWORD, code=codes[0]))

    race(first, second, second_waits=True)

    assert first.error is None, first.error
    assert isinstance(second.error, LastOwner), second.error
    assert not RecoveryCode.objects.filter(user=owner, used_at__isnull=False).exists()


def user_row_locked(sql: str) -> bool:
    return (
        sql.startswith("SELECT") and f'FROM "{User._meta.db_table}"' in sql and "FOR UPDATE" in sql
    )


def membership_added_by_another_organization(user, how: str = "added") -> tuple[Call, Organization]:
    """`user` joins another organization on a connection of its own: added by an owner of
    it, or accepting its owner's invitation."""
    elsewhere = OrganizationFactory(name="Elsewhere")
    adder = MembershipFactory(organization=elsewhere, role=Role.OWNER)
    if how == "added":
        return Call(
            lambda: add_member(actor_membership=adder, email=user.email, role=Role.MEMBER)
        ), elsewhere
    invite_member(actor_membership=adder, email=user.email, role=Role.MEMBER)
    token = invitations_token_of(user)
    return Call(lambda: accept_invitation(user=user, token=token)), elsewhere


@pytest.mark.parametrize("how", ["added", "invited"])
def test_a_membership_added_between_the_deletions_locks_is_removed_with_an_event(
    how, organization, owner, member
):
    """Added after the deletion locked its memberships and before it locked the user row,
    the membership went with the user row (the cascade), and that organization's log never
    said the member left. The deletion starts again and removes it as the others."""
    deletion = deletion_of(member, held=True)
    adding, elsewhere = membership_added_by_another_organization(member, how)

    race(deletion, adding)

    assert adding.error is None, adding.error
    assert deletion.error is None, deletion.error
    assert not User.objects.filter(pk=member.pk).exists()
    assert not Membership.objects.filter(organization=elsewhere).exclude(role=Role.OWNER)
    removed = AuditEvent.objects.get(organization=elsewhere, action=Action.MEMBER_REMOVED)
    assert removed.details["reason"] == "account_deleted"
    assert removed.target_id == str(member.pk) and removed.target_label == ""


def test_a_deletion_that_keeps_finding_new_memberships_gives_up_and_changes_nothing(
    organization, owner, member, monkeypatch
):
    """Each start again needs another add in those milliseconds; past the bound, the page
    says to try again and nothing is deleted."""
    monkeypatch.setattr(services, "DELETION_ATTEMPTS", 1)
    deletion = deletion_of(member, held=True)
    adding, elsewhere = membership_added_by_another_organization(member)

    race(deletion, adding)

    assert adding.error is None, adding.error
    assert isinstance(deletion.error, ValidationFailed), deletion.error
    assert User.objects.filter(pk=member.pk).exists()
    assert {m.organization_id for m in Membership.objects.filter(user=member)} == {
        organization.pk,
        elsewhere.pk,
    }
    assert not AuditEvent.objects.filter(action=Action.MEMBER_REMOVED).exists()


@pytest.mark.parametrize("how", ["added", "invited"])
def test_a_membership_added_after_the_deletion_locked_the_user_waits_and_finds_no_account(
    how, organization, owner, member
):
    """The other order: the add waits for the deletion's lock on the user row, then finds
    the account gone (404, as for an address with none), not a server error."""
    deletion = Call(
        lambda: services.delete_account(actor=member, password=PASSWORD), user_row_locked
    )
    adding, elsewhere = membership_added_by_another_organization(member, how)

    race(deletion, adding, second_waits=True)

    assert deletion.error is None, deletion.error
    assert isinstance(adding.error, NotFound), adding.error
    assert not User.objects.filter(pk=member.pk).exists()
    assert not AuditEvent.objects.filter(organization=elsewhere, action=Action.MEMBER_ADDED)
