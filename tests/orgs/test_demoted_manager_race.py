"""An admin demoted, removed or deactivated while their change to keys, webhooks, projects,
members or invitations is in flight (found and left alone by earlier audits: the change was
made on the role read when the request began).

The role is read again under locks on the organization's row, then the caller's
membership, and the account after them, in the change's own transaction
(`apps.orgs.access.manager_role_now`, which `as_manager` wraps): a demotion, removal or
deactivation that committed meanwhile refuses the change, and one that comes while the
change holds the lock waits for its commit. The races are staged, not hoped for: the
request is held after a chosen statement while the owner acts, then let go.

PostgreSQL only: SQLite serialises every writer, so the race cannot happen there.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.contrib.admin import site as admin_site
from django.db import connection, transaction
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone

from apps.accounts.admin import UserAdmin
from apps.accounts.models import User
from apps.accounts.services import deactivate_user
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from apps.audit.models import AuditEvent
from apps.invitations import services as invitation_services
from apps.invitations.models import Invitation
from apps.orgs import services as org_services
from apps.orgs.models import Membership, Organization
from apps.projects.models import Project
from apps.webhooks import services as webhook_services
from apps.webhooks.models import EventType, Webhook
from tests.factories import MembershipFactory, UserFactory, make_key
from tests.orgs.helpers import (
    collection_url,
    error_code,
    key_url,
    membership_inline_data,
    user_client,
)
from tests.pages import CONFIRMED, logged_in
from tests.races import Call, race

pytestmark = pytest.mark.django_db(transaction=True)

MEMBERSHIP_TABLE = Membership._meta.db_table
ORGANIZATION_TABLE = Organization._meta.db_table


@pytest.fixture(autouse=True)
def _concurrent_database(settings):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: row locks and concurrent writers")
    settings.WEBHOOKS_ALLOW_PRIVATE = True  # a loopback URL, as in development


def held(send, held_after) -> Call:
    """The request `send` on a connection of its own, started and held just after the first
    statement `held_after` accepts."""
    request = Call(send, held_after=held_after)
    request.start()
    assert request.held.wait(timeout=5), request.error
    return request


def response_of(request: Call):
    """Let the held request go; its response."""
    request.let_go()
    request.join(timeout=10)
    assert not request.is_alive() and request.error is None, request.error
    return request.result


def role_read(sql: str) -> bool:
    """The request's first read of the caller's role (its collection, 404 to outsiders)."""
    return MEMBERSHIP_TABLE in sql


def organization_locked(sql: str) -> bool:
    """A change's lock on the organization's row, taken before the role's."""
    return ORGANIZATION_TABLE in sql and "FOR NO KEY UPDATE" in sql


def role_locked(sql: str) -> bool:
    """The change's read of the role again, under the lock."""
    return MEMBERSHIP_TABLE in sql and "FOR NO KEY UPDATE" in sql


def as_owner(organization, owner, admin, change: str) -> None:
    """The owner demotes the admin to member or removes them, or an operator deactivates
    the admin's account."""
    if change == "deactivated":
        deactivate_user(user=admin, actor_user=UserFactory(is_staff=True))
        return
    actor = Membership.objects.get(organization=organization, user=owner)
    target = Membership.objects.get(organization=organization, user=admin)
    if change == "demoted":
        org_services.change_member_role(actor_membership=actor, target=target, role="member")
    else:
        org_services.remove_member(actor_membership=actor, target=target)


OPERATIONS = [
    "mint",
    "mint org key",
    "patch",
    "revoke",
    "roll",
    "create webhook",
    "delete webhook",
    "enable webhook",
    "create project",
    "add member",
    "invite",
    "cancel invitation",
]
NEWCOMER = "newcomer@example.com"
HOOK_URL = "http://127.0.0.1:9/sigsentry"  # nothing is delivered in these tests


def webhook_change(operation: str, client, owner, organization):
    """What the admin sends about webhooks, and the webhook it concerns (None: a new one)."""
    hooks = f"/v1/organizations/{organization.id}/webhooks"
    if operation == "create webhook":
        body = {"url": HOOK_URL, "events": list(EventType.values)}
        return None, lambda: client.post(hooks, body, format="json")
    webhook = webhook_services.create_webhook(
        actor=owner, organization=organization, url=HOOK_URL, events=list(EventType.values)
    ).webhook
    if operation == "delete webhook":
        return webhook, lambda: client.delete(f"{hooks}/{webhook.id}")
    Webhook.objects.filter(pk=webhook.pk).update(disabled_at=timezone.now())
    webhook.refresh_from_db()
    return webhook, lambda: client.post(f"{hooks}/{webhook.id}/enable")


def member_change(operation: str, client, owner, organization):
    """What the admin sends about members, and the invitation it concerns (None: a new one)."""
    url = f"/v1/organizations/{organization.id}"
    if operation == "add member":
        UserFactory(email=NEWCOMER)
        body = {"email": NEWCOMER, "role": "member"}
        return None, lambda: client.post(f"{url}/members", body, format="json")
    if operation == "invite":
        body = {"email": NEWCOMER, "role": "member"}
        return None, lambda: client.post(f"{url}/invitations", body, format="json")
    actor = Membership.objects.get(organization=organization, user=owner)
    invitation = invitation_services.invite_member(
        actor_membership=actor, email=NEWCOMER, role="member"
    )
    return invitation, lambda: client.delete(f"{url}/invitations/{invitation.id}")


def admin_change(operation: str, owner, admin, organization, project):
    """What the admin sends, and the key, webhook or invitation it concerns (None: a new
    one)."""
    client = user_client(admin)
    if operation in ("add member", "invite", "cancel invitation"):
        return member_change(operation, client, owner, organization)
    if operation == "create project":
        url = f"/v1/organizations/{organization.id}/projects"
        return None, lambda: client.post(url, {"name": "Payments"}, format="json")
    if operation.endswith("webhook"):
        return webhook_change(operation, client, owner, organization)
    kind = KeyKind.ORGANIZATION if operation == "mint org key" else KeyKind.SECRET
    if operation.startswith("mint"):
        body = {"name": "Deploys", "permissions": ["analysis:read"]}
        return None, lambda: client.post(collection_url(kind, project), body, format="json")
    api_key, _plaintext = make_key(kind, project=project)
    if operation == "patch":
        body = {"rateLimit": {"requests": 5, "perSeconds": 60}}
        return api_key, lambda: client.patch(key_url(kind, project, api_key), body, format="json")
    body = {"graceSeconds": 60} if operation == "roll" else {}
    url = key_url(kind, project, api_key, operation)
    return api_key, lambda: client.post(url, body, format="json")


def unchanged(operation: str, target, admin) -> bool:
    """Nothing the change would have written: no key, webhook, project, member or invitation
    made, the one it concerns as it was, no event in the admin's name."""
    made = {
        "create project": Project.objects.filter(name="Payments"),
        "add member": Membership.objects.filter(user__email=NEWCOMER),
        "invite": Invitation.objects.filter(email=NEWCOMER),
    }
    model = Webhook if "webhook" in operation else ApiKey
    model = Invitation if operation == "cancel invitation" else model
    if operation in made:
        untouched = not made[operation].exists()
    elif target is None:
        untouched = not model.objects.exists()
    else:
        before = model.objects.filter(pk=target.pk).values().first()
        untouched = list(model.objects.all()) == [target] and before == target_values(target)
    return untouched and not AuditEvent.objects.filter(actor_user=admin).exists()


def target_values(target) -> dict:
    """The key's, webhook's or invitation's row as the test made it."""
    return {field.attname: getattr(target, field.attname) for field in target._meta.concrete_fields}


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ("demoted", 403, "PERMISSION_DENIED"),
        ("removed", 404, None),
        ("deactivated", 404, None),
    ],
)
def test_a_change_by_an_admin_demoted_removed_or_deactivated_meanwhile_is_refused(
    owner, admin, organization, project, operation, change, status, code
):
    target, send = admin_change(operation, owner, admin, organization, project)
    request = held(send, role_read)  # the role read: admin

    as_owner(organization, owner, admin, change)
    response = response_of(request)

    assert response.status_code == status, response.content
    if code is not None:
        assert error_code(response) == code
    assert unchanged(operation, target, admin)


@pytest.mark.parametrize("operation", OPERATIONS)
def test_a_demotion_during_the_change_waits_for_it(owner, admin, organization, project, operation):
    """The change holds the admin's membership row from its second read of the role to its
    commit: the owner's demotion meets that lock, waits, and comes after the change."""
    _target, send = admin_change(operation, owner, admin, organization, project)
    request = Call(send, held_after=role_locked)
    demotion = Call(lambda: as_owner(organization, owner, admin, "demoted"))

    race(request, demotion, second_waits=True)

    assert request.error is None and demotion.error is None, (request.error, demotion.error)
    assert request.result.status_code in (200, 201, 204), request.result.content
    assert Membership.objects.get(organization=organization, user=admin).role == "member"
    demoted = AuditEvent.objects.get(action="member.role_changed")
    by_admin = AuditEvent.objects.filter(actor_user=admin)
    assert by_admin.exists() and all(e.created_at <= demoted.created_at for e in by_admin)


@pytest.mark.parametrize("operation", OPERATIONS)
def test_a_change_waiting_for_a_deactivation_of_its_admin_is_refused(
    owner, admin, organization, project, operation
):
    """Found by an audit: the deactivation holds the admin's memberships until it commits,
    and a change waiting for them read the account as its statement had found it before
    the wait, active, and went through on the authority of a deactivated account (an
    invitation sent after the deactivation had cancelled theirs). The account is read
    after the lock now."""
    target, send = admin_change(operation, owner, admin, organization, project)
    deactivation = Call(
        lambda: as_owner(organization, owner, admin, "deactivated"),
        held_after=lambda sql: sql.startswith("UPDATE") and 'SET "is_active"' in sql,
    )
    request = Call(send)

    race(deactivation, request, second_waits=True)

    assert deactivation.error is None and request.error is None, (deactivation.error, request.error)
    assert request.result.status_code == 404, request.result.content
    assert unchanged(operation, target, admin)


@pytest.mark.parametrize("change", ["demote", "remove"])
def test_a_member_change_by_an_admin_deactivated_meanwhile_is_refused(
    owner, admin, organization, change
):
    """Members are changed under the locks of `_lock_for_change`, which read the actor's
    account with their membership."""
    target = MembershipFactory(organization=organization, role="member")
    client = user_client(admin)
    url = f"/v1/organizations/{organization.id}/members/{target.user_id}"
    if change == "demote":
        request = held(lambda: client.patch(url, {"role": "viewer"}, format="json"), role_read)
    else:
        request = held(lambda: client.delete(url), role_read)

    as_owner(organization, owner, admin, "deactivated")
    response = response_of(request)

    assert response.status_code == 403, response.content
    assert Membership.objects.get(pk=target.pk).role == "member"
    assert not AuditEvent.objects.filter(actor_user=admin).exists()


@pytest.mark.parametrize("held_after", ["the memberships' lock", "the account's update"])
def test_an_operator_deactivating_an_admin_on_their_user_page_and_their_member_change(
    owner, admin, organization, held_after
):
    """Found by the review: the admin's user page updated the account, then the
    deactivation locked the memberships, while a member change locked the memberships,
    then the account's row with them: a deadlock, and one of the two got a 503. The
    deactivation now comes first on that page, and a member change reads the account
    after its lock without locking it: the change waits, then finds the account gone."""
    target = MembershipFactory(organization=organization, role="member")
    operator = UserFactory(is_staff=True, is_superuser=True)
    request = RequestFactory().post("/admin/")
    request.user = operator

    def deactivate_on_the_user_page():
        with transaction.atomic():  # as the admin's change view
            user = User.objects.get(pk=admin.pk)
            user.is_active = False
            form = SimpleNamespace(changed_data=["is_active"], instance=user, new_address=False)
            UserAdmin(User, admin_site).save_model(request, user, form, change=True)

    statement = {
        "the memberships' lock": role_locked,
        "the account's update": lambda sql: sql.startswith(f'UPDATE "{User._meta.db_table}"'),
    }[held_after]
    page = Call(deactivate_on_the_user_page, held_after=statement)
    url = f"/v1/organizations/{organization.id}/members/{target.user_id}"
    client = user_client(admin)  # logged in before: a login would wait for the account's row
    change = Call(lambda: client.patch(url, {"role": "viewer"}, format="json"))

    race(page, change, second_waits=True)

    assert page.error is None and change.error is None, (page.error, change.error)
    assert change.result.status_code == 403, change.result.content
    assert Membership.objects.get(pk=target.pk).role == "member"
    assert not User.objects.get(pk=admin.pk).is_active


PAGE_OPERATIONS = ["revoke from the page", "delete webhook from the page"]


@pytest.mark.parametrize("operation", PAGE_OPERATIONS)
def test_a_page_action_of_an_admin_demoted_meanwhile_is_refused(
    owner, admin, organization, project, operation
):
    """The dashboard's key and webhook actions take the same lock as the API's."""
    client = logged_in(admin)
    if operation.startswith("revoke"):
        target, _plaintext = make_key(KeyKind.SECRET, project=project)
        url = f"/projects/{project.id}/api-keys/{target.id}/revoke/"
    else:
        target = webhook_services.create_webhook(
            actor=owner, organization=organization, url=HOOK_URL, events=list(EventType.values)
        ).webhook
        url = f"/orgs/{organization.id}/webhooks/{target.id}/delete/"
    request = held(lambda: client.post(url, CONFIRMED), role_read)

    as_owner(organization, owner, admin, "demoted")
    response = response_of(request)

    assert response.status_code == 403
    assert unchanged(operation, target, admin)


def test_an_operator_demoting_an_owner_in_the_admin_waits_for_their_mint(
    owner, organization, project
):
    """The admin's organization page locks the organization's row before anything else, as
    a key change does: found by a review, an owner's mint holding the organization's row
    while the operator's form held the owners' rows (to keep an owner) and waited for the
    organization's was a deadlock, and one of the two got a 503."""
    MembershipFactory(organization=organization, role="owner")  # one stays an owner
    operator = UserFactory(is_staff=True, is_superuser=True)
    ops = Client()
    ops.force_login(operator)
    client = user_client(owner)
    body = {"name": "Deploys", "permissions": ["analysis:read"]}
    mint = Call(
        lambda: client.post(collection_url(KeyKind.ORGANIZATION, project), body, format="json"),
        held_after=organization_locked,
    )
    page = reverse("admin:orgs_organization_change", args=[organization.pk])
    demote = Call(lambda: ops.post(page, membership_inline_data(organization, {owner.pk: "admin"})))

    race(mint, demote, second_waits=True)

    assert mint.error is None and demote.error is None, (mint.error, demote.error)
    assert (mint.result.status_code, demote.result.status_code) == (201, 302)
    assert Membership.objects.get(organization=organization, user=owner).role == "admin"
    minted = AuditEvent.objects.get(action="key.minted")
    demoted = AuditEvent.objects.get(action="member.role_changed")
    assert minted.created_at <= demoted.created_at


def test_a_demotion_while_an_owner_sets_the_key_policy_waits_for_it(owner, organization):
    """The policy is the owners': the owner's role is read under the membership's lock, so
    another owner's demotion of them comes after the policy, not between its read and its
    commit (the organization's lock alone never held a demotion back)."""
    other = MembershipFactory(organization=organization, role="owner").user
    client = user_client(owner)
    url = f"/v1/organizations/{organization.id}"
    policy = Call(
        lambda: client.patch(url, {"keyMaxLifetimeDays": 30}, format="json"),
        held_after=role_locked,
    )
    demotion = Call(lambda: as_owner(organization, other, owner, "demoted"))

    race(policy, demotion, second_waits=True)

    assert policy.error is None and demotion.error is None, (policy.error, demotion.error)
    assert policy.result.status_code == 200, policy.result.content
    organization.refresh_from_db()
    assert organization.key_max_lifetime_days == 30
    updated = AuditEvent.objects.get(action="organization.updated")
    assert updated.created_at <= AuditEvent.objects.get(action="member.role_changed").created_at


def test_a_policy_set_while_another_member_is_demoted_waits_and_both_commit(
    owner, admin, organization
):
    """Found by a review: the policy locked the organization's row FOR UPDATE, then the
    owner's membership; a demotion elsewhere in the organization held the owners' rows and
    then needed the organization's row for its audit event's reference. The policy's lock
    is NO KEY now: the demotion's event goes through, and the policy waits for it."""
    other_owner = MembershipFactory(organization=organization, role="owner").user
    demotion = Call(
        lambda: as_owner(organization, other_owner, admin, "demoted"),
        held_after=lambda sql: MEMBERSHIP_TABLE in sql and "FOR UPDATE" in sql,
    )
    client = user_client(owner)
    url = f"/v1/organizations/{organization.id}"
    policy = Call(lambda: client.patch(url, {"keyMaxLifetimeDays": 30}, format="json"))

    race(demotion, policy, second_waits=True)

    assert demotion.error is None and policy.error is None, (demotion.error, policy.error)
    assert policy.result.status_code == 200, policy.result.content
    assert Membership.objects.get(organization=organization, user=admin).role == "member"
    organization.refresh_from_db()
    assert organization.key_max_lifetime_days == 30


@pytest.mark.parametrize("change", ["demote", "remove"])
def test_an_owner_leaving_while_the_other_owner_is_deactivated_is_refused(
    owner, organization, change
):
    """Found by the authorization audit: the last owner whose account is active could leave
    or step down beside deactivated owners, leaving the organization's settings to nobody.
    The deactivation holds the co-owner's membership until it commits; the owner's change
    waits for it on the owners' locks, then reads the accounts in a statement of its own."""
    other = MembershipFactory(organization=organization, role="owner").user
    client = user_client(owner)
    url = f"/v1/organizations/{organization.id}/members/{owner.id}"
    deactivation = Call(
        lambda: deactivate_user(user=other),
        held_after=lambda sql: sql.startswith("UPDATE") and 'SET "is_active"' in sql,
    )
    if change == "demote":
        request = Call(lambda: client.patch(url, {"role": "admin"}, format="json"))
    else:
        request = Call(lambda: client.delete(url))

    race(deactivation, request, second_waits=True)

    assert deactivation.error is None and request.error is None, (deactivation.error, request.error)
    assert request.result.status_code == 409, request.result.content
    assert Membership.objects.get(organization=organization, user=owner).role == "owner"
