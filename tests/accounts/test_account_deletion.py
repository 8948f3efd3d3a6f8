"""Deleting one's own account (`services.delete_account`): GDPR Art. 17, as GitHub and
Sentry offer it. Re-authenticated, refused for a last owner, one transaction."""

from __future__ import annotations

import json

import pytest
from django.db import OperationalError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tasks_db.models import DBTaskResult
from rest_framework.test import APIClient

from apps.accounts import mail, services
from apps.accounts.models import AuthSession, RecoveryCode, TotpDevice, User
from apps.analyses.models import Analysis
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from apps.audit.models import AuditEvent
from apps.audit.services import Action
from apps.invitations.services import invite_member
from apps.notifications.models import Reminder
from apps.orgs.models import Membership, Organization
from apps.projects.models import Project
from apps.webhooks.models import Delivery, Event, Webhook
from core.errors import InvalidCredentials, LastOwner, ValidationFailed
from core.permissions import Role
from tests.accounts.test_two_factor import code_at, enable_two_factor, fresh_step
from tests.conftest import bearer
from tests.factories import (
    PASSWORD,
    MembershipFactory,
    OrganizationFactory,
    ProjectFactory,
    UserFactory,
    make_analysis,
    make_key,
    make_webhook,
)

pytestmark = pytest.mark.django_db


def key_answers(plaintext: str) -> int:
    return APIClient().get("/v1/me", **bearer(plaintext)).status_code


def solo_organization(user, name="Solo") -> tuple[Organization, Project]:
    organization = OrganizationFactory(name=name)
    MembershipFactory(organization=organization, user=user, role=Role.OWNER)
    return organization, ProjectFactory(organization=organization)


def test_an_organization_of_which_the_user_is_the_only_member_goes_with_everything_in_it(
    owner,
):
    alone = UserFactory()
    solo, project = solo_organization(alone)
    webhook = make_webhook(solo, alone).webhook
    api_key, plaintext = make_key(KeyKind.SECRET, project=project, actor=alone)
    _org_key, org_plaintext = make_key(KeyKind.ORGANIZATION, organization=solo, actor=alone)
    make_analysis(project, author=alone)
    Reminder.objects.create(kind="key_unused", dedupe_key=f"x:{api_key.id}", organization=solo)
    assert Delivery.objects.filter(webhook=webhook).exists()  # the mints' key.minted
    assert key_answers(plaintext) == 200 and key_answers(org_plaintext) == 200

    plan = services.delete_account(actor=alone, password=PASSWORD)

    assert [(d.organization, d.projects, d.keys) for d in plan.deleted] == [(solo, 1, 2)]
    assert key_answers(plaintext) == 401 and key_answers(org_plaintext) == 401
    assert not Organization.objects.filter(pk=solo.pk).exists()
    for model in (Project, ApiKey, Webhook, Event, AuditEvent, Reminder, Membership):
        assert not model.objects.filter(organization_id=solo.pk).exists(), model
    assert not Delivery.objects.filter(webhook_id=webhook.pk).exists()
    assert not Analysis.objects.filter(project_id=project.pk).exists()
    assert not User.objects.filter(pk=alone.pk).exists()


def test_in_an_organization_that_lives_on_only_the_membership_goes_and_its_keys_keep_working(
    organization, project, owner, admin
):
    api_key, plaintext = make_key(KeyKind.SECRET, project=project, actor=admin)
    make_analysis(project, author=admin)
    address = admin.email

    plan = services.delete_account(actor=admin, password=PASSWORD)

    assert plan.left == [organization] and plan.deleted == [] and plan.blocking == []
    assert key_answers(plaintext) == 200
    api_key.refresh_from_db()
    assert api_key.created_by is None and api_key.created_by_email == ""
    listed = APIClient().get(
        f"/v1/projects/{project.id}/api-keys", **bearer(services.start_session(owner).access)
    )
    assert listed.json()["results"][0]["createdBy"] is None
    assert Analysis.objects.get(project=project).created_by_label == ""
    assert list(
        Membership.objects.filter(organization=organization).values_list("user", flat=True)
    ) == [owner.pk]
    removed = AuditEvent.objects.get(organization=organization, action=Action.MEMBER_REMOVED)
    assert removed.details == {"role": Role.ADMIN, "reason": "account_deleted"}
    assert removed.target_id == str(admin.pk) and removed.actor_user_id is None
    for event in AuditEvent.objects.filter(organization=organization):
        assert address not in (event.actor_label, event.target_label), event.action
        assert address not in str(event.details)


def test_the_webhook_events_of_their_keys_keep_no_address(organization, project, owner, admin):
    """A key event holds the key as the API answered it, its creator's address with it:
    kept 30 days, shown to the organization and sent again by each retry of a delivery."""
    make_webhook(organization, owner)
    api_key, _ = make_key(KeyKind.SECRET, project=project, actor=admin)
    other_key, _ = make_key(KeyKind.SECRET, project=project, actor=owner)
    assert Event.objects.filter(data__key__id=str(api_key.id)).exists()

    services.delete_account(actor=admin, password=PASSWORD)

    for event in Event.objects.filter(data__key__id=str(api_key.id)):
        assert event.data["key"]["createdBy"] is None, event.type
        assert event.data["key"]["prefix"] == api_key.prefix
    [kept] = Event.objects.filter(data__key__id=str(other_key.id))
    assert kept.data["key"]["createdBy"] == {"id": str(owner.pk), "email": owner.email}


def test_the_audit_api_shows_a_deleted_actor_without_an_address(
    organization, project, owner, admin
):
    make_key(KeyKind.SECRET, project=project, actor=admin)
    services.delete_account(actor=admin, password=PASSWORD)

    events = (
        APIClient()
        .get(
            f"/v1/organizations/{organization.id}/audit-events",
            **bearer(services.start_session(owner).access),
        )
        .json()["results"]
    )

    minted = next(e for e in events if e["action"] == Action.KEY_MINTED)
    assert minted["actor"] == {"type": "user", "id": None}
    removed = next(e for e in events if e["action"] == Action.MEMBER_REMOVED)
    assert removed["target"] == {"type": "user", "id": str(admin.pk), "label": ""}


def test_the_last_owner_of_an_organization_with_other_members_is_refused_and_nothing_changes(
    organization, project, owner, member
):
    solo, _ = solo_organization(owner)
    _key, plaintext = make_key(KeyKind.SECRET, project=project, actor=owner)

    with pytest.raises(LastOwner) as refused:
        services.delete_account(actor=owner, password=PASSWORD)

    assert refused.value.organizations == [organization]
    assert refused.value.details["organizations"] == [
        {"id": str(organization.id), "name": organization.name}
    ]
    assert User.objects.filter(pk=owner.pk).exists()
    assert Organization.objects.filter(pk=solo.pk).exists()
    assert Membership.objects.filter(user=owner).count() == 2
    assert key_answers(plaintext) == 200


def test_an_owner_with_another_owner_who_can_act_leaves(organization, owner):
    other = MembershipFactory(organization=organization, role=Role.OWNER).user

    services.delete_account(actor=owner, password=PASSWORD)

    assert list(
        Membership.objects.filter(organization=organization).values_list("user", flat=True)
    ) == [other.pk]


def test_a_deactivated_co_owner_is_no_owner_to_keep(organization, owner, member):
    other = MembershipFactory(organization=organization, role=Role.OWNER).user
    User.objects.filter(pk=other.pk).update(is_active=False)

    with pytest.raises(LastOwner):
        services.delete_account(actor=owner, password=PASSWORD)


def test_every_session_ends_at_once(organization, member):
    pair = services.start_session(member)
    other = services.start_session(member)
    client = APIClient()
    assert client.get("/v1/me", **bearer(pair.access)).status_code == 200

    services.delete_account(actor=member, password=PASSWORD)

    assert client.get("/v1/me", **bearer(pair.access)).status_code == 401
    assert client.get("/v1/me", **bearer(other.access)).json()["error"]["code"] == "TOKEN_INVALID"
    refreshed = client.post("/v1/auth/refresh", {"refresh": pair.refresh}, format="json")
    assert refreshed.status_code == 401
    assert not AuthSession.objects.filter(user_id=member.pk).exists()


def test_a_wrong_password_changes_nothing(organization, member):
    with pytest.raises(InvalidCredentials):
        services.delete_account(actor=member, password="not-the-password")
    with pytest.raises(ValidationFailed):
        services.delete_account(actor=member, password="")

    assert User.objects.filter(pk=member.pk).exists()
    assert Membership.objects.filter(user=member).exists()


def test_with_two_factor_on_the_code_is_needed_too(organization, member):
    secret, _codes = enable_two_factor(member)

    with pytest.raises(ValidationFailed) as missing:
        services.delete_account(actor=member, password=PASSWORD)
    assert "code" in missing.value.details["fields"]
    with pytest.raises(InvalidCredentials):
        services.delete_account(actor=member, password=PASSWORD, code="000000")
    assert User.objects.filter(pk=member.pk).exists()

    fresh_step()
    services.delete_account(actor=member, password=PASSWORD, code=code_at(secret))

    assert not User.objects.filter(pk=member.pk).exists()
    assert not TotpDevice.objects.filter(user_id=member.pk).exists()
    assert not RecoveryCode.objects.filter(user_id=member.pk).exists()


def test_a_recovery_code_does_it_too(organization, member):
    _secret, codes = enable_two_factor(member)

    services.delete_account(actor=member, password=PASSWORD, code=codes[0])

    assert not User.objects.filter(pk=member.pk).exists()


def test_a_refused_deletion_spends_no_recovery_code(organization, owner, member):
    _secret, codes = enable_two_factor(owner)

    with pytest.raises(LastOwner):
        services.delete_account(actor=owner, password=PASSWORD, code=codes[0])

    assert RecoveryCode.objects.filter(user=owner, used_at__isnull=True).count() == 10


def test_an_operators_account_is_refused(organization, member):
    User.objects.filter(pk=member.pk).update(is_staff=True)
    member.refresh_from_db()

    with pytest.raises(ValidationFailed):
        services.delete_account(actor=member, password=PASSWORD)

    assert User.objects.filter(pk=member.pk).exists()


def test_the_invitations_they_sent_in_organizations_that_live_on_are_cancelled(
    organization, owner, admin
):
    membership = Membership.objects.get(user=admin, organization=organization)
    invitation = invite_member(
        actor_membership=membership, email="someone@example.com", role=Role.MEMBER
    )

    services.delete_account(actor=admin, password=PASSWORD)

    invitation.refresh_from_db()
    assert invitation.cancelled_at is not None and invitation.invited_by is None
    cancelled = AuditEvent.objects.get(action=Action.MEMBER_INVITATION_CANCELLED)
    assert cancelled.details["reason"] == "inviter_removed" and cancelled.actor_label == ""


def test_an_email_confirms_it_and_the_address_can_sign_up_again(organization, member, mailbox):
    address = member.email

    services.delete_account(actor=member, password=PASSWORD)

    [message] = mailbox.wait_for(address)
    assert message.subject == "Your SigSentry account was deleted"
    assert address in message.text and "http" not in message.text
    again = services.signup(email=address, password=PASSWORD, organization_name="Again")
    assert again.user.email == address and again.user.pk != member.pk


def queue_a_retry_holding_addresses(member, mailbox) -> DBTaskResult:
    """A notice whose first try failed: its retry waits for the worker with the account's
    old and new addresses (its row kept 7 days after the worker found the account gone)."""
    mailbox.refusing = 1
    mail.send_email_changed(user=member, old="before@example.com", when=timezone.now())
    retry = DBTaskResult.objects.get(
        task_path=mail.resend_email.module_path, args_kwargs__args__1__user_id=str(member.pk)
    )
    assert "before@example.com" in json.dumps(retry.args_kwargs)
    return retry


def test_no_queued_email_retry_keeps_an_address_of_the_account(
    organization, member, mailbox, django_capture_on_commit_callbacks
):
    new = member.email
    queue_a_retry_holding_addresses(member, mailbox)

    with django_capture_on_commit_callbacks(execute=True):
        services.delete_account(actor=member, password=PASSWORD)

    assert mailbox.wait_for(new)  # the deletion's notice
    held = json.dumps(list(DBTaskResult.objects.values_list("args_kwargs", flat=True)))
    assert "before@example.com" not in held and new not in held


def retries_withdrawn(queries) -> list[str]:
    """The statements among `queries` that look the queue up by an account's id."""
    table = DBTaskResult._meta.db_table
    return [q["sql"] for q in queries if table in q["sql"] and "user_id" in q["sql"]]


def test_the_retries_go_after_the_deletion_commits_not_under_its_locks(
    organization, member, mailbox, django_capture_on_commit_callbacks
):
    """The queue's JSON path has no index: scanned in the deletion's transaction, it held
    the account's, memberships' and organizations' locks meanwhile."""
    retry = queue_a_retry_holding_addresses(member, mailbox)

    with (
        django_capture_on_commit_callbacks() as after_commit,
        CaptureQueriesContext(connection) as in_transaction,
    ):
        services.delete_account(actor=member, password=PASSWORD)

    assert not retries_withdrawn(in_transaction)
    assert DBTaskResult.objects.filter(pk=retry.pk).exists()
    with CaptureQueriesContext(connection) as committed:
        for callback in after_commit:
            callback()
    assert len(retries_withdrawn(committed)) == 1
    assert not DBTaskResult.objects.filter(pk=retry.pk).exists()


def test_retries_not_withdrawn_leave_the_deletion_done_and_a_line_without_address(
    organization, member, mailbox, django_capture_on_commit_callbacks, caplog
):
    retry = queue_a_retry_holding_addresses(member, mailbox)
    address = member.email

    def outage(execute, sql, params, many, context):
        if DBTaskResult._meta.db_table in sql and "DELETE" in sql:
            raise OperationalError("the database is unreachable")
        return execute(sql, params, many, context)

    with django_capture_on_commit_callbacks() as after_commit:
        services.delete_account(actor=member, password=PASSWORD)
    # A savepoint: after a real commit the failed statement ends nothing, here the test's
    # transaction would be.
    with connection.execute_wrapper(outage), transaction.atomic():
        for callback in after_commit:
            callback()  # raises nothing

    assert not User.objects.filter(pk=member.pk).exists()
    assert DBTaskResult.objects.filter(pk=retry.pk).exists()  # pruned with the finished ones
    [line] = [r for r in caplog.records if "not withdrawn" in r.getMessage()]
    assert line.getMessage() == "email retries of deleted accounts not withdrawn (OperationalError)"
    assert address not in caplog.text and "before@example.com" not in caplog.text


def test_deleting_again_changes_nothing(organization, member):
    assert services.delete_account(actor=member, password=PASSWORD) is not None

    assert services.delete_account(actor=member, password=PASSWORD) is None
