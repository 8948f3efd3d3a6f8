"""The operators' admin (SPEC §6): every page loads, keys are never exposed, writes are guarded."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.admin import site as admin_site
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.auth.models import Permission as AuthPermission
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from apps.accounts.models import AuthSession, User
from apps.accounts.services import DELETED_ACCOUNT_LABEL, delete_account, start_session
from apps.accounts.templatetags.dashboard import breakable_email
from apps.analyses.models import Analysis, Feedback, FollowUp
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.legacy import LegacyKeySpec, import_legacy_keys
from apps.apikeys.models import ApiKey
from apps.audit.models import AuditEvent
from apps.audit.services import Action
from apps.invitations.services import invite_member
from apps.orgs.models import Membership, Organization
from apps.orgs.services import set_key_lifetime_policy
from apps.projects.models import Channel, LogSource, Project
from core.permissions import Role
from tests.accounts.test_account_deletion import queue_a_retry_holding_addresses, retries_withdrawn
from tests.accounts.test_two_factor import enable_two_factor
from tests.conftest import bearer
from tests.factories import (
    PASSWORD,
    MembershipFactory,
    OrganizationFactory,
    UserFactory,
    make_analysis,
    make_key,
)
from tests.orgs.helpers import membership_inline_data, user_client
from tests.pages import logged_in

LEGACY_KEY = "tb_AdminLegacyKey1234567890"
NEW_PASSWORD = "a-brand-new-passphrase-42"


@pytest.fixture
def superuser(db):
    return UserFactory(email="ops@sigsentry.dev", is_staff=True, is_superuser=True)


@pytest.fixture
def ops(superuser) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


@pytest.fixture
def keys(project, owner) -> dict[str, tuple[ApiKey, str]]:
    """One key of every kind, a revoked and an expired one, and an imported legacy key."""
    made = {
        "sdk": make_key(KeyKind.PUBLIC, project=project, actor=owner, name="SDK"),
        "secret": make_key(KeyKind.SECRET, project=project, actor=owner, name="Secret"),
        "org": make_key(KeyKind.ORGANIZATION, organization=project.organization, name="Org"),
        "revoked": make_key(KeyKind.SECRET, project=project, name="Revoked"),
        "expired": make_key(KeyKind.SECRET, project=project, name="Expired"),
    }
    ApiKey.objects.filter(pk=made["revoked"][0].pk).update(revoked_at=timezone.now())
    ApiKey.objects.filter(pk=made["expired"][0].pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    import_legacy_keys(
        specs=[LegacyKeySpec(key=LEGACY_KEY, project=project, name="Legacy", permissions=[])]
    )
    made["legacy"] = (ApiKey.objects.get(legacy=True), LEGACY_KEY)
    for name, (api_key, plaintext) in made.items():
        api_key.refresh_from_db()
        made[name] = (api_key, plaintext)
    return made


@pytest.fixture
def populated(project, owner, viewer, keys):
    """Rows of every model the admin shows."""
    analysis = make_analysis(project, author=owner, title="502s", input="upstream timed out")
    authored = {"created_by_type": "key", "created_by_label": keys["secret"][0].prefix}
    FollowUp.objects.create(analysis=analysis, question="Why?", **authored)
    Feedback.objects.create(analysis=analysis, rating="up", **authored)
    LogSource.objects.create(project=project, name="HTTP intake", kind="http")
    Channel.objects.create(
        project=project, name="Slack", kind="slack", target="https://hooks.slack.com/T0/B0/XyZ"
    )
    start_session(owner)
    return analysis


def changelist(model) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def change_url(obj) -> str:
    meta = obj._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])


def delete_url(obj) -> str:
    meta = obj._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_delete", args=[obj.pk])


def results(response) -> list:
    return list(response.context["cl"].result_list)


def assert_no_secret(content: bytes, keys) -> None:
    text = content.decode()
    for api_key, plaintext in keys.values():
        assert api_key.digest not in text
        assert plaintext not in text


CHANGELIST_QUERIES = [
    ("accounts.User", ""),
    ("accounts.User", "?q=example.com&is_active__exact=1&is_staff__exact=0"),
    ("accounts.AuthSession", ""),
    ("accounts.AuthSession", "?end_reason__exact=logout&ended_at__isempty=1&q=example"),
    ("orgs.Organization", "?q=Acme&o=2"),
    ("orgs.Membership", "?role__exact=owner&q=example.com"),
    ("projects.Project", "?q=Checkout"),
    ("apikeys.ApiKey", ""),
    ("apikeys.ApiKey", "?type__exact=secret&scope__exact=project&legacy__exact=1&status=active"),
    ("apikeys.ApiKey", "?q=ss_secret_&o=-9"),
    ("audit.AuditEvent", "?action=key.minted&actor_type__exact=user&q=example.com"),
    ("analyses.Analysis", "?status__exact=queued&q=502"),
    ("auth.Group", ""),
]


@pytest.mark.parametrize(("label", "query"), CHANGELIST_QUERIES)
def test_changelists_load_with_filters_and_search(ops, populated, keys, label, query):
    response = ops.get(changelist(apps.get_model(label)) + query)

    assert response.status_code == 200
    assert "errornote" not in response.content.decode()
    assert_no_secret(response.content, keys)


def test_change_pages_load_for_every_model(ops, populated, keys, project, owner, superuser):
    objects = [
        owner,
        AuthSession.objects.filter(user=owner).first(),
        project.organization,
        Membership.objects.filter(user=owner).first(),
        project,
        AuditEvent.objects.first(),
        populated,
        *(api_key for api_key, _ in keys.values()),
    ]

    for obj in objects:
        response = ops.get(change_url(obj))
        assert response.status_code == 200, obj
        assert_no_secret(response.content, keys)
    password_page = ops.get(reverse("admin:auth_user_password_change", args=[owner.pk]))
    assert password_page.status_code == 200
    for page in ("admin:accounts_user_add", "admin:orgs_organization_add", "admin:index"):
        assert ops.get(reverse(page)).status_code == 200


def test_api_key_page_shows_the_prefix_and_never_the_digest(ops, keys):
    for api_key, plaintext in keys.values():
        content = ops.get(change_url(api_key)).content.decode()

        assert api_key.prefix in content
        assert api_key.digest not in content
        assert plaintext not in content
        assert "digest" not in content.lower()


def test_api_keys_cannot_be_found_by_their_digest(ops, keys):
    api_key, _ = keys["secret"]

    assert results(ops.get(changelist(ApiKey) + f"?q={api_key.digest}")) == []
    assert results(ops.get(changelist(ApiKey) + f"?q={api_key.prefix}")) == [api_key]
    expired, _ = keys["expired"]
    assert results(ops.get(changelist(ApiKey) + "?q=expired")) == [expired]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?status=active", {"sdk", "secret", "org", "legacy"}),
        ("?status=revoked", {"revoked"}),
        ("?status=expired", {"expired"}),
        ("?legacy__exact=1", {"legacy"}),
        ("?type__exact=public", {"sdk"}),
        ("?scope__exact=organization", {"org"}),
    ],
)
@pytest.mark.usefixtures("before_the_sunset")  # legacy keys work on any day
def test_api_key_filters_select_the_right_keys(ops, keys, query, expected):
    by_id = {api_key.pk: name for name, (api_key, _) in keys.items()}

    found = {by_id[api_key.pk] for api_key in results(ops.get(changelist(ApiKey) + query))}

    assert found == expected


def test_api_keys_cannot_be_added_changed_or_deleted(ops, keys):
    api_key, _ = keys["secret"]
    add_url = reverse("admin:apikeys_apikey_add")

    assert ops.get(add_url).status_code == 403
    assert ops.post(add_url, {"name": "x", "digest": "0" * 64}).status_code == 403
    changed = ops.post(change_url(api_key), {"name": "Renamed", "digest": "0" * 64})
    deleted = ops.post(delete_url(api_key), {"post": "yes"})

    assert changed.status_code == 403
    assert deleted.status_code == 403
    after = ApiKey.objects.get(pk=api_key.pk)
    assert (after.name, after.digest) == ("Secret", api_key.digest)
    assert ApiKey.objects.count() == len(keys)


def test_revoke_action_revokes_through_the_service_with_an_audit_event(
    ops, superuser, keys, api_client
):
    secret, plaintext = keys["secret"]
    already_revoked, _ = keys["revoked"]
    events_before = AuditEvent.objects.filter(action=Action.KEY_REVOKED).count()
    assert '<option value="revoke">Revoke</option>' in ops.get(changelist(ApiKey)).content.decode()

    response = ops.post(
        changelist(ApiKey),
        {"action": "revoke", "_selected_action": [secret.pk, already_revoked.pk]},
        follow=True,
    )

    assert response.status_code == 200
    assert "Revoked 1 key(s)." in response.content.decode()
    secret.refresh_from_db()
    assert secret.revoked_at is not None
    assert (secret.revoked_by, secret.revoked_reason) == (superuser, "admin")
    events = AuditEvent.objects.filter(action=Action.KEY_REVOKED)
    assert events.count() == events_before + 1
    event = events.get(target_id=str(secret.pk))
    assert (event.actor_user, event.actor_label) == (superuser, superuser.email)
    assert event.details == {"name": "Secret", "reason": "admin"}
    me = api_client.get("/v1/me", **bearer(plaintext))
    assert me.json()["error"]["code"] == "KEY_REVOKED"


@pytest.mark.usefixtures("before_the_sunset")
def test_revoke_action_revokes_legacy_keys_too(ops, keys, api_client):
    legacy, plaintext = keys["legacy"]

    ops.post(changelist(ApiKey), {"action": "revoke", "_selected_action": [legacy.pk]})

    assert api_client.get("/v1/me", **bearer(plaintext)).json()["error"]["code"] == "KEY_REVOKED"


def test_staff_who_may_only_view_keys_cannot_revoke(keys):
    staff = UserFactory(is_staff=True)
    staff.user_permissions.add(AuthPermission.objects.get(codename="view_apikey"))
    client = Client()
    client.force_login(staff)
    secret, _ = keys["secret"]

    listed = client.get(changelist(ApiKey))
    client.post(changelist(ApiKey), {"action": "revoke", "_selected_action": [secret.pk]})

    assert listed.status_code == 200
    assert '<option value="revoke">' not in listed.content.decode()
    secret.refresh_from_db()
    assert secret.revoked_at is None


def test_audit_events_are_read_only(ops, populated):
    event = AuditEvent.objects.first()
    snapshot = (event.action, event.actor_label, event.details)

    assert ops.get(change_url(event)).status_code == 200
    assert ops.get(reverse("admin:audit_auditevent_add")).status_code == 403
    assert ops.post(change_url(event), {"action": "forged", "actor_label": "x"}).status_code == 403
    assert ops.post(delete_url(event), {"post": "yes"}).status_code == 403
    bulk = ops.post(
        changelist(AuditEvent), {"action": "delete_selected", "_selected_action": [event.pk]}
    )

    assert bulk.status_code in (200, 302)
    event.refresh_from_db()
    assert (event.action, event.actor_label, event.details) == snapshot


def test_audit_event_action_filter_selects_that_action(ops, populated):
    found = results(ops.get(changelist(AuditEvent) + "?action=legacy_keys.imported"))

    assert [event.action for event in found] == ["legacy_keys.imported"]


def test_sessions_are_read_only_and_hide_their_token_material(ops, owner):
    start_session(owner)
    session = AuthSession.objects.get(user=owner)

    page = ops.get(change_url(session)).content.decode()
    changed = ops.post(change_url(session), {"ended_at": "2020-01-01 00:00:00"})

    assert session.refresh_jti not in page
    assert session.password_fingerprint not in page
    assert changed.status_code == 403
    session.refresh_from_db()
    assert session.ended_at is None


def test_end_sessions_action_logs_the_user_out(ops, owner, api_client):
    token = start_session(owner).access
    session = AuthSession.objects.get(user=owner)

    ops.post(changelist(AuthSession), {"action": "end_sessions", "_selected_action": [session.pk]})

    assert api_client.get("/v1/me", **bearer(token)).json()["error"]["code"] == "TOKEN_INVALID"
    session.refresh_from_db()
    assert session.end_reason == AuthSession.EndReason.LOGOUT


def operator_events(action: str, user) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action, target_id=str(user.pk)))


def test_an_operators_changes_to_a_members_account_are_in_its_organizations_log(
    ops, superuser, member, organization
):
    """Found by an audit-log audit: deactivating, reactivating, turning two-factor off or
    ending sessions of a member in the admin changed their access with no event anywhere."""
    other_organization = OrganizationFactory()
    MembershipFactory(organization=other_organization, user=member, role=Role.VIEWER)
    enable_two_factor(member)
    start_session(member)
    start_session(member)
    sessions = list(AuthSession.objects.filter(user=member).values_list("pk", flat=True))

    ops.post(changelist(AuthSession), {"action": "end_sessions", "_selected_action": sessions})
    ops.post(changelist(User), {"action": "turn_off_two_factor", "_selected_action": [member.pk]})
    ops.post(changelist(User), {"action": "deactivate_users", "_selected_action": [member.pk]})
    member.refresh_from_db()
    reactivated = ops.post(change_url(member), user_form(member, is_active="on"))

    assert reactivated.status_code == 302
    for action, details in (
        (Action.MEMBER_SESSIONS_ENDED, {"sessions": len(sessions)}),
        (Action.MEMBER_TWO_FACTOR_RESET, {}),
        (Action.MEMBER_DEACTIVATED, {}),
        (Action.MEMBER_REACTIVATED, {}),
    ):
        events = operator_events(action, member)
        assert {e.organization_id for e in events} == {organization.id, other_organization.id}
        assert {e.actor_user_id for e in events} == {superuser.pk}, action
        assert all(e.details == {"role": e.details["role"], **details} for e in events), [
            e.details for e in events
        ]
    # Nothing recorded when nothing changed: no session left, two-factor already off.
    ops.post(changelist(AuthSession), {"action": "end_sessions", "_selected_action": sessions})
    ops.post(changelist(User), {"action": "turn_off_two_factor", "_selected_action": [member.pk]})
    ops.post(changelist(User), {"action": "deactivate_users", "_selected_action": [member.pk]})
    ops.post(changelist(User), {"action": "deactivate_users", "_selected_action": [member.pk]})
    assert len(operator_events(Action.MEMBER_SESSIONS_ENDED, member)) == 2
    assert len(operator_events(Action.MEMBER_TWO_FACTOR_RESET, member)) == 2
    assert len(operator_events(Action.MEMBER_DEACTIVATED, member)) == 4  # twice, two orgs


def user_form(user, **overrides) -> dict:
    data = {"email": user.email, "is_active": "on", "is_staff": "", "is_superuser": ""}
    data.update(overrides)
    return {k: v for k, v in data.items() if v != ""}


def test_unticking_active_ends_every_session_of_the_user(ops, member, api_client):
    tokens = [start_session(member).access for _ in range(2)]

    response = ops.post(change_url(member), user_form(member, is_active=""))

    assert response.status_code == 302
    member.refresh_from_db()
    assert member.is_active is False
    for token in tokens:
        assert api_client.get("/v1/me", **bearer(token)).json()["error"]["code"] == "TOKEN_INVALID"
    assert set(AuthSession.objects.filter(user=member).values_list("end_reason", flat=True)) == {
        AuthSession.EndReason.DEACTIVATED
    }


def test_a_user_whose_address_a_later_rule_refuses_can_still_be_deactivated(ops, member):
    """Found by the review: an address stored before a rule (an IDN domain, now given in
    its xn-- form) failed the form's and the model's check on every save, deactivation
    included. Only an address being changed is checked."""
    User.objects.filter(pk=member.pk).update(email="ana@b\u00fccher.example")
    member.refresh_from_db()

    response = ops.post(change_url(member), user_form(member, is_active=""))

    assert response.status_code == 302
    member.refresh_from_db()
    assert member.is_active is False and member.email == "ana@b\u00fccher.example"
    changed = ops.post(change_url(member), user_form(member, email="ana@b\u00fccher.example.org"))
    assert changed.status_code == 200 and "spelled differently" in changed.content.decode()


def test_saving_a_user_without_deactivating_keeps_their_sessions(ops, member, api_client):
    token = start_session(member).access

    ops.post(change_url(member), user_form(member, is_staff="on"))

    assert api_client.get("/v1/me", **bearer(token)).status_code == 200


def test_deactivate_action_ends_sessions(ops, member, viewer, api_client):
    token = start_session(member).access
    other = start_session(viewer).access

    ops.post(
        changelist(User),
        {"action": "deactivate_users", "_selected_action": [member.pk]},
    )

    member.refresh_from_db()
    assert member.is_active is False
    assert api_client.get("/v1/me", **bearer(token)).json()["error"]["code"] == "TOKEN_INVALID"
    assert api_client.get("/v1/me", **bearer(other)).status_code == 200


def test_deactivating_the_last_active_owner_names_the_organization_left_without_one(
    ops, owner, member
):
    """An admin audit: the member pages refuse to leave an organization without an owner
    who can act; a deactivation may (an emergency), and now says so."""
    organization = Organization.objects.get(memberships__user=owner)
    second = MembershipFactory(organization=organization, role=Role.OWNER).user

    def deactivate(user) -> str:
        data = {"action": "deactivate_users", "_selected_action": [user.pk]}
        return ops.post(changelist(User), data, follow=True).content.decode()

    assert "can act now" not in deactivate(member)
    assert "can act now" not in deactivate(second)  # the owner still acts
    warned = deactivate(owner)

    assert f"No owner of {organization.name} can act now" in warned
    assert not User.objects.get(pk=owner.pk).is_active  # told, not refused


def test_deactivating_an_inviter_cancels_their_invitations_with_the_operator_as_actor(
    ops, admin, superuser
):
    membership = Membership.objects.get(user=admin)
    invitation = invite_member(actor_membership=membership, email="new@example.com", role="member")

    ops.post(changelist(User), {"action": "deactivate_users", "_selected_action": [admin.pk]})

    invitation.refresh_from_db()
    assert invitation.cancelled_at is not None
    event = AuditEvent.objects.get(action=Action.MEMBER_INVITATION_CANCELLED)
    assert event.actor_user == superuser
    assert event.details["reason"] == "inviter_deactivated"


def test_setting_a_password_in_the_admin_ends_the_users_sessions(ops, member, api_client):
    token = start_session(member).access
    url = reverse("admin:auth_user_password_change", args=[member.pk])

    response = ops.post(
        url, {"usable_password": "true", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    )

    assert response.status_code == 302
    assert api_client.get("/v1/me", **bearer(token)).json()["error"]["code"] == "TOKEN_INVALID"
    assert AuthSession.objects.get(user=member).end_reason == (
        AuthSession.EndReason.PASSWORD_CHANGED
    )
    member.refresh_from_db()
    assert member.check_password(NEW_PASSWORD)


def test_users_are_created_with_a_normalised_email(ops):
    response = ops.post(
        reverse("admin:accounts_user_add"),
        {
            "email": "  New.Person@Example.COM ",
            "usable_password": "true",
            "password1": NEW_PASSWORD,
            "password2": NEW_PASSWORD,
        },
    )

    assert response.status_code == 302
    user = User.objects.get(email="new.person@example.com")
    assert user.check_password(NEW_PASSWORD)


def test_a_duplicate_email_in_another_case_is_refused(ops, member):
    response = ops.post(
        reverse("admin:accounts_user_add"),
        {
            "email": member.email.upper(),
            "usable_password": "true",
            "password1": NEW_PASSWORD,
            "password2": NEW_PASSWORD,
        },
    )

    assert response.status_code == 200
    assert "already exists" in response.content.decode()


def test_organization_inline_refuses_to_demote_the_last_owner(ops, owner, member):
    organization = Organization.objects.get(memberships__user=owner)

    response = ops.post(
        change_url(organization), membership_inline_data(organization, {owner.pk: Role.ADMIN})
    )

    assert response.status_code == 200
    assert "must keep at least one owner" in response.content.decode()
    assert Membership.objects.get(user=owner).role == Role.OWNER


def test_organization_inline_may_hand_ownership_over(ops, owner, member):
    organization = Organization.objects.get(memberships__user=owner)

    response = ops.post(
        change_url(organization),
        membership_inline_data(organization, {owner.pk: Role.ADMIN, member.pk: Role.OWNER}),
    )

    assert response.status_code == 302
    assert Membership.objects.get(user=member).role == Role.OWNER


def test_organization_inline_counts_only_owners_who_can_act(ops, owner, member):
    """An admin audit: handing ownership to a deactivated account on the organization's page
    left it no owner who could act, which the API and the membership page refuse."""
    organization = Organization.objects.get(memberships__user=owner)
    User.objects.filter(pk=member.pk).update(is_active=False)

    handed = ops.post(
        change_url(organization),
        membership_inline_data(organization, {owner.pk: Role.ADMIN, member.pk: Role.OWNER}),
    )
    added = ops.post(
        reverse("admin:orgs_organization_add"),
        {
            "name": "Owned by nobody who can act",
            **_inline_forms("memberships", total=1),
            "memberships-0-user": str(member.pk),
            "memberships-0-role": "owner",
            **_inline_forms("projects"),
        },
    )

    for refused in (handed, added):
        assert refused.status_code == 200
        assert "must keep at least one owner" in refused.content.decode()
    assert Membership.objects.get(user=owner).role == Role.OWNER
    assert Membership.objects.get(user=member).role == Role.MEMBER
    assert not Organization.objects.filter(name="Owned by nobody who can act").exists()


@pytest.mark.parametrize("members", [(), (Role.MEMBER,)], ids=["no member", "no owner"])
def test_an_organization_without_an_owner_can_still_be_renamed(ops, members):
    """Every save of its page was refused ("must keep at least one owner") until an owner
    was added, even a rename: only a change that takes the last owner away is."""
    organization = OrganizationFactory(name="Orphaned")
    for role in members:
        MembershipFactory(organization=organization, role=role)
    data = membership_inline_data(organization, {}) | {"name": "Orphaned, renamed"}

    response = ops.post(change_url(organization), data)

    assert response.status_code == 302, response.content.decode()
    organization.refresh_from_db()
    assert organization.name == "Orphaned, renamed"
    assert AuditEvent.objects.filter(
        organization=organization, action=Action.ORGANIZATION_UPDATED
    ).exists()


def test_membership_admin_refuses_to_demote_or_delete_the_last_owner(ops, owner):
    membership = Membership.objects.get(user=owner)

    demoted = ops.post(change_url(membership), {"role": Role.MEMBER})
    deleted = ops.post(delete_url(membership), {"post": "yes"})

    assert "must keep at least one owner" in demoted.content.decode()
    assert deleted.status_code == 200
    assert Membership.objects.get(pk=membership.pk).role == Role.OWNER


def test_membership_admin_counts_only_owners_who_can_act(ops, owner):
    """Found by the review: beside a deactivated owner, the admin let an operator demote or
    delete the last owner whose account is active, as the API no longer does."""
    membership = Membership.objects.get(user=owner)
    former = MembershipFactory(organization=membership.organization, role=Role.OWNER).user
    User.objects.filter(pk=former.pk).update(is_active=False)

    demoted = ops.post(change_url(membership), {"role": Role.MEMBER})
    deleted = ops.post(delete_url(membership), {"post": "yes"})

    assert "must keep at least one owner" in demoted.content.decode()
    assert deleted.status_code == 200
    assert Membership.objects.get(pk=membership.pk).role == Role.OWNER
    deactivated = Membership.objects.get(user=former)
    assert ops.post(delete_url(deactivated), {"post": "yes"}).status_code == 302
    assert not Membership.objects.filter(pk=deactivated.pk).exists()


def test_membership_admin_changes_roles_when_an_owner_remains(ops, owner, member):
    MembershipFactory(organization=Membership.objects.get(user=owner).organization, role="owner")
    membership = Membership.objects.get(user=owner)

    response = ops.post(change_url(membership), {"role": Role.ADMIN})

    assert response.status_code == 302
    assert Membership.objects.get(pk=membership.pk).role == Role.ADMIN


def actions_on(organization) -> list[tuple[str, dict]]:
    return list(
        AuditEvent.objects.filter(organization_id=organization.pk)
        .order_by("created_at")
        .values_list("action", "details")
    )


def test_membership_changes_in_the_admin_are_audited_like_the_apis(ops, superuser, owner, outsider):
    """An operator's add, role change and removal land in the organization's audit log,
    the operator as actor (never a silent way to make someone owner)."""
    organization = Membership.objects.get(user=owner).organization
    AuditEvent.objects.filter(organization_id=organization.pk).delete()

    added = ops.post(
        reverse("admin:orgs_membership_add"),
        {"user": str(outsider.pk), "organization": str(organization.pk), "role": Role.ADMIN},
    )
    membership = Membership.objects.get(user=outsider, organization=organization)
    changed = ops.post(change_url(membership), {"role": Role.OWNER})
    removed = ops.post(delete_url(membership), {"post": "yes"})

    assert (added.status_code, changed.status_code, removed.status_code) == (302, 302, 302)
    assert actions_on(organization) == [
        (Action.MEMBER_ADDED, {"role": "admin"}),
        (Action.MEMBER_ROLE_CHANGED, {"from": "admin", "to": "owner"}),
        (Action.MEMBER_REMOVED, {"role": "owner"}),
    ]
    assert set(
        AuditEvent.objects.filter(organization_id=organization.pk).values_list(
            "actor_user_id", flat=True
        )
    ) == {superuser.pk}


def test_organization_inline_changes_are_audited(ops, owner, member):
    organization = Organization.objects.get(memberships__user=owner)
    AuditEvent.objects.filter(organization_id=organization.pk).delete()

    response = ops.post(
        change_url(organization),
        membership_inline_data(organization, {owner.pk: Role.ADMIN, member.pk: Role.OWNER}),
    )

    assert response.status_code == 302
    assert sorted(actions_on(organization), key=lambda pair: pair[1]["from"]) == [
        (Action.MEMBER_ROLE_CHANGED, {"from": "member", "to": "owner"}),
        (Action.MEMBER_ROLE_CHANGED, {"from": "owner", "to": "admin"}),
    ]


def test_organization_inline_never_moves_a_membership_to_another_user(ops, owner, member, outsider):
    organization = Organization.objects.get(memberships__user=owner)
    data = membership_inline_data(organization, {})
    index = next(i for i in range(5) if data[f"memberships-{i}-user"] == str(member.pk))
    data[f"memberships-{index}-user"] = str(outsider.pk)

    response = ops.post(change_url(organization), data)

    assert response.status_code == 200
    assert "does not move to another user" in response.content.decode()
    assert Membership.objects.filter(user=member, organization=organization).exists()
    assert not Membership.objects.filter(user=outsider, organization=organization).exists()


def test_deleting_the_only_owner_user_is_refused(ops, owner):
    response = ops.post(delete_url(owner), {"post": "yes"})

    assert response.status_code == 200
    assert Membership.objects.filter(user=owner).exists()


def test_deleting_a_user_audits_each_membership_removed(ops, superuser, owner, member):
    organization = Organization.objects.get(memberships__user=owner)
    AuditEvent.objects.filter(organization_id=organization.pk).delete()

    response = ops.post(delete_url(member), {"post": "yes"})

    assert response.status_code == 302
    assert not Membership.objects.filter(user_id=member.pk).exists()
    assert actions_on(organization) == [(Action.MEMBER_REMOVED, {"role": "member"})]
    event = AuditEvent.objects.get(organization_id=organization.pk)
    assert event.actor_user_id == superuser.pk


def test_a_user_deleted_by_an_operator_leaves_no_address_in_the_audit_log(ops, owner, member):
    organization = Organization.objects.get(memberships__user=owner)
    address = member.email

    ops.post(delete_url(member), {"post": "yes"})

    removed = AuditEvent.objects.get(organization_id=organization.pk, action=Action.MEMBER_REMOVED)
    assert removed.target_id == str(member.pk) and removed.target_label == ""
    assert not AuditEvent.objects.filter(target_label=address).exists()


def admin_history_of(user) -> list[LogEntry]:
    return list(
        LogEntry.objects.filter(
            content_type=ContentType.objects.get_for_model(User), object_id=str(user.pk)
        ).order_by("action_time", "id")
    )


def holds_an_address(entries: list[LogEntry], *addresses: str) -> bool:
    return any(a in e.object_repr or a in e.change_message for e in entries for a in addresses)


def test_a_deleted_account_leaves_its_addresses_out_of_the_admins_history(ops, owner, member):
    """Django's history of the user's page named the account by its address (`object_repr`)
    after the account was deleted on the account page: it keeps the changes, under the id."""
    old = member.email
    response = ops.post(change_url(member), user_form(member, email="renamed@example.com"))
    assert response.status_code == 302, response.content
    assert holds_an_address(admin_history_of(member), "renamed@example.com")

    delete_account(actor=User.objects.get(pk=member.pk), password=PASSWORD)

    entries = admin_history_of(member)
    assert [e.object_repr for e in entries] == [DELETED_ACCOUNT_LABEL]
    assert entries[0].get_change_message() == "Changed Email."
    assert not holds_an_address(list(LogEntry.objects.all()), old, "renamed@example.com")


def test_an_account_deleted_by_an_operator_leaves_its_address_out_of_the_admins_history(
    ops, owner, member
):
    """The deletion's own entry, written before the account goes, too."""
    address = member.email

    ops.post(delete_url(member), {"post": "yes"})

    entries = admin_history_of(member)
    assert [(e.action_flag, e.object_repr) for e in entries] == [(DELETION, DELETED_ACCOUNT_LABEL)]
    assert not holds_an_address(list(LogEntry.objects.all()), address)


def test_accounts_deleted_by_an_operator_lose_their_email_retries_once_it_commits(
    ops, owner, member, mailbox, django_capture_on_commit_callbacks
):
    """Not under the deletion's locks: the queue's JSON path has no index."""
    other = MembershipFactory(organization=Organization.objects.get(memberships__user=owner)).user
    retries = [queue_a_retry_holding_addresses(user, mailbox).pk for user in (member, other)]

    with (
        django_capture_on_commit_callbacks() as after_commit,
        CaptureQueriesContext(connection) as in_transaction,
    ):
        response = ops.post(
            changelist(User),
            {"action": "delete_selected", "_selected_action": [member.pk, other.pk], "post": "yes"},
        )

    assert response.status_code == 302
    assert not User.objects.filter(pk__in=[member.pk, other.pk]).exists()
    assert not retries_withdrawn(in_transaction)
    for callback in after_commit:
        callback()
    assert not DBTaskResult.objects.filter(pk__in=retries).exists()


def _inline_forms(*prefixes: str, total: int = 0) -> dict:
    return {
        f"{prefix}-{field}": value
        for prefix in prefixes
        for field, value in (
            ("TOTAL_FORMS", str(total)),
            ("INITIAL_FORMS", "0"),
            ("MIN_NUM_FORMS", "0"),
            ("MAX_NUM_FORMS", "1000"),
        )
    }


def test_a_project_added_in_the_admin_is_audited_like_the_apis(ops, superuser, owner):
    organization = Organization.objects.get(memberships__user=owner)
    AuditEvent.objects.filter(organization_id=organization.pk).delete()

    added = ops.post(
        reverse("admin:projects_project_add"),
        {
            "name": "From the admin",
            "organization": str(organization.pk),
            **_inline_forms("log_sources", "channels"),
        },
    )
    inline = ops.post(
        change_url(organization),
        {
            **membership_inline_data(organization, {}),
            **_inline_forms("projects", total=1),
            "projects-0-name": "From the inline",
            "projects-0-organization": str(organization.pk),
        },
    )

    assert (added.status_code, inline.status_code) == (302, 302)
    events = AuditEvent.objects.filter(
        organization_id=organization.pk, action=Action.PROJECT_CREATED
    )
    assert sorted(events.values_list("target_label", flat=True)) == [
        "From the admin",
        "From the inline",
    ]
    assert {e.actor_user_id for e in events} == {superuser.pk}
    created = organization.projects.filter(name__startswith="From the")
    assert {e.project_id for e in events} == set(created.values_list("id", flat=True))


def test_an_organization_added_in_the_admin_is_audited_like_a_sign_ups(ops, superuser, owner):
    """Found by an audit-log audit: its members and projects were recorded, not itself."""
    added = ops.post(
        reverse("admin:orgs_organization_add"),
        {
            "name": "Made by an operator",
            **_inline_forms("memberships", total=1),
            "memberships-0-user": str(owner.pk),
            "memberships-0-role": "owner",
            **_inline_forms("projects"),
        },
    )

    assert added.status_code == 302, added.content
    organization = Organization.objects.get(name="Made by an operator")
    created = AuditEvent.objects.get(
        organization_id=organization.pk, action=Action.ORGANIZATION_CREATED
    )
    assert (created.actor_user_id, created.target_label) == (superuser.pk, organization.name)
    assert AuditEvent.objects.filter(
        organization_id=organization.pk, action=Action.MEMBER_ADDED
    ).exists()


def test_an_operators_rename_keeps_a_key_policy_an_owner_set_meanwhile(superuser, owner, rf):
    """An admin audit: the organization's save wrote back the whole row read with its
    request, so a key lifetime policy set through the API in between was undone."""
    organization = Organization.objects.get(memberships__user=owner)
    organization_admin = admin_site.get_model_admin(Organization)
    request = rf.post(change_url(organization))
    request.user = superuser
    read = organization_admin.get_object(request, str(organization.pk))
    form = organization_admin.get_form(request, read, change=True)(
        {"name": "Renamed"}, instance=read
    )
    assert form.is_valid(), form.errors

    set_key_lifetime_policy(actor_membership=Membership.objects.get(user=owner), days=30)
    organization_admin.save_model(request, form.save(commit=False), form, change=True)

    organization.refresh_from_db()
    assert (organization.name, organization.key_max_lifetime_days) == ("Renamed", 30)


def test_renames_in_the_admin_are_audited_with_the_names_before_and_after(
    ops, superuser, owner, project, other_project
):
    """Organizations and projects are renamed only here (the API and pages cannot): each
    rename is an `organization.updated` / `project.updated` event in the organization's
    log, the operator as actor, in the admin's transaction; saving unchanged writes none."""
    organization = Organization.objects.get(memberships__user=owner)
    AuditEvent.objects.filter(organization_id=organization.pk).delete()
    empty_inlines = _inline_forms("log_sources", "channels")

    renamed_project = ops.post(change_url(project), {"name": "Checkout v2", **empty_inlines})
    unchanged = ops.post(change_url(project), {"name": "Checkout v2", **empty_inlines})
    projects = list(organization.projects.order_by("created_at"))
    inline = membership_inline_data(organization, {})
    inline.update(
        {
            "name": "Acme Corp",
            "projects-TOTAL_FORMS": str(len(projects)),
            "projects-INITIAL_FORMS": str(len(projects)),
        }
    )
    for index, each in enumerate(projects):
        inline[f"projects-{index}-id"] = str(each.pk)
        inline[f"projects-{index}-organization"] = str(organization.pk)
        inline[f"projects-{index}-name"] = "Billing v2" if each == other_project else each.name
    renamed_organization = ops.post(change_url(organization), inline)

    assert [r.status_code for r in (renamed_project, unchanged, renamed_organization)] == [302] * 3
    events = AuditEvent.objects.filter(organization_id=organization.pk).order_by("created_at")
    assert [(e.action, e.target_label, e.details) for e in events] == [
        (
            Action.PROJECT_UPDATED,
            "Checkout v2",
            {"fields": ["name"], "before": {"name": "Checkout"}, "after": {"name": "Checkout v2"}},
        ),
        (
            Action.ORGANIZATION_UPDATED,
            "Acme Corp",
            {"fields": ["name"], "before": {"name": "Acme"}, "after": {"name": "Acme Corp"}},
        ),
        (
            Action.PROJECT_UPDATED,
            "Billing v2",
            {"fields": ["name"], "before": {"name": "Billing"}, "after": {"name": "Billing v2"}},
        ),
    ]
    assert {e.actor_user_id for e in events} == {superuser.pk}
    assert [e.project_id for e in events] == [project.id, None, other_project.id]


def test_organizations_are_deleted_in_bulk_with_what_belongs_to_them(ops, owner, project):
    """The changelist's delete action locks the organizations first (their queryset counts
    members and projects: the lock is taken on a plain one) and deletes them."""
    doomed = Organization.objects.get(memberships__user=owner)
    other = Organization.objects.create(name="Also doomed")
    kept = Organization.objects.create(name="Kept")

    response = ops.post(
        changelist(Organization),
        {"action": "delete_selected", "_selected_action": [doomed.pk, other.pk], "post": "yes"},
    )

    assert response.status_code == 302
    assert list(Organization.objects.all()) == [kept]
    assert not Project.objects.filter(pk=project.pk).exists()


def test_an_organization_is_deleted_with_its_keys_events_and_analyses(ops, populated, keys):
    """Found by a privacy audit: the admin answered 403 to deleting any organization with a
    key or an audit event (the admin shows those read-only), so none could be deleted."""
    organization = populated.project.organization
    assert AuditEvent.objects.filter(organization=organization).exists()

    page = ops.get(delete_url(organization))
    response = ops.post(delete_url(organization), {"post": "yes"})

    assert page.status_code == 200 and "permission to delete" not in page.content.decode()
    assert response.status_code == 302
    assert not Organization.objects.filter(pk=organization.pk).exists()
    assert not ApiKey.objects.filter(organization=organization.pk).exists()
    assert not AuditEvent.objects.filter(organization=organization.pk).exists()
    assert not Analysis.objects.filter(pk=populated.pk).exists()
    api = Client()
    assert api.get("/v1/me", **bearer(keys["secret"][1])).status_code == 401


@pytest.mark.parametrize("revoked", [False, True], ids=["active key", "revoked key"])
def test_a_project_with_keys_is_not_deleted(ops, project, owner, revoked):
    """A key's row stays for the audit, revoked ones too (SPEC §2.1): its project with it."""
    api_key, plaintext = make_key(KeyKind.SECRET, project=project, actor=owner)
    if revoked:
        ApiKey.objects.filter(pk=api_key.pk).update(revoked_at=timezone.now())

    page = ops.get(delete_url(project))
    response = ops.post(delete_url(project), {"post": "yes"})

    reason = f"{project.name}: 1 API key(s); keys stay for the organization&#x27;s audit"
    assert reason in page.content.decode()
    assert response.status_code == 200  # the admin's "cannot delete" page again
    assert Project.objects.filter(pk=project.pk).exists()
    assert ApiKey.objects.filter(pk=api_key.pk).exists()
    if not revoked:
        assert Client().get("/v1/me", **bearer(plaintext)).status_code == 200


def test_a_project_an_organization_key_is_confined_to_is_not_deleted(ops, project, other_project):
    """Found by a review: once its project was gone, the key named no project, and an edit
    of its other limits saved an empty list: every project of the organization."""
    make_key(
        KeyKind.ORGANIZATION, organization=project.organization, project_ids=[str(other_project.pk)]
    )

    response = ops.post(delete_url(other_project), {"post": "yes"})

    assert response.status_code == 200
    assert "1 active organization key(s) confined to it" in response.content.decode()
    assert Project.objects.filter(pk=other_project.pk).exists()


def test_a_project_without_keys_is_deleted_with_its_analyses_and_audited(
    ops, owner, project, superuser
):
    """Its analyses and configuration go with it (the admin shows analyses read-only); the
    organization's log records it."""
    doomed = Project.objects.create(organization=project.organization, name="Doomed")
    analysis = make_analysis(doomed, author=owner)
    LogSource.objects.create(project=doomed, name="HTTP intake", kind="http")

    response = ops.post(delete_url(doomed), {"post": "yes"})

    assert response.status_code == 302
    assert not Project.objects.filter(pk=doomed.pk).exists()
    assert not Analysis.objects.filter(pk=analysis.pk).exists()
    assert Project.objects.filter(pk=project.pk).exists()
    event = AuditEvent.objects.get(action=Action.PROJECT_DELETED)
    assert (event.organization_id, event.target_id, event.target_label) == (
        doomed.organization_id,
        str(doomed.pk),
        "Doomed",
    )
    assert event.actor_user == superuser


def test_a_key_minted_after_the_confirmation_keeps_its_project(project, owner, superuser, rf):
    """The delete locks the projects and checks their keys again: what the confirmation
    page saw may have changed."""
    make_key(KeyKind.SECRET, project=project, actor=owner)
    request = rf.post(delete_url(project))
    request.user = superuser
    project_admin = admin_site.get_model_admin(Project)

    with pytest.raises(PermissionDenied):
        project_admin.delete_queryset(request, Project.objects.filter(pk=project.pk))

    assert Project.objects.filter(pk=project.pk).exists()
    assert not AuditEvent.objects.filter(action=Action.PROJECT_DELETED).exists()


def test_a_project_never_moves_to_another_organization(ops, project, outsider):
    elsewhere = Organization.objects.get(memberships__user=outsider)

    response = ops.post(
        change_url(project),
        {
            "name": "Renamed",
            "organization": str(elsewhere.pk),
            **{
                f"{prefix}-{field}": "0"
                for prefix in ("log_sources", "channels")
                for field in ("TOTAL_FORMS", "INITIAL_FORMS", "MIN_NUM_FORMS")
            },
            "log_sources-MAX_NUM_FORMS": "1000",
            "channels-MAX_NUM_FORMS": "1000",
        },
    )

    assert response.status_code == 302
    project.refresh_from_db()
    assert project.name == "Renamed"
    assert project.organization_id != elsewhere.pk


def test_channel_targets_are_not_shown_on_the_project_page(ops, populated, project):
    content = ops.get(change_url(project)).content.decode()

    assert "HTTP intake" in content
    assert "hooks.slack.com" not in content


def test_analyses_are_read_only(ops, populated):
    assert ops.post(change_url(populated), {"title": "changed"}).status_code == 403
    assert ops.post(delete_url(populated), {"post": "yes"}).status_code == 403
    populated.refresh_from_db()
    assert populated.title == "502s"


def test_non_staff_users_cannot_reach_the_admin(member):
    client = Client()
    client.login(email=member.email, password=PASSWORD)

    response = client.get(changelist(ApiKey))

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_a_user_who_has_logged_in_can_be_deleted_and_their_sessions_go_too(ops, member):
    """The session admin is read-only; that must not make every user who ever logged in
    undeletable (the delete answered 403)."""
    start_session(member)
    assert AuthSession.objects.filter(user=member).exists()

    response = ops.post(delete_url(member), {"post": "yes"})

    assert response.status_code == 302
    assert not User.objects.filter(pk=member.pk).exists()
    assert not AuthSession.objects.filter(user_id=member.pk).exists()
    assert AuditEvent.objects.filter(action=Action.MEMBER_REMOVED).exists()


def test_a_large_organizations_page_links_its_members_and_projects_and_saves(ops, owner):
    """A pages audit: the page edited every member and project in place; at 40 members its
    form posted more fields than DATA_UPLOAD_MAX_NUMBER_FIELDS (a 400: it could not be
    saved) and read one user per row. Past 25 rows it links to their own lists."""
    from apps.orgs.admin import INLINE_ROWS_AT_MOST

    organization = Organization.objects.get(memberships__user=owner)
    for _ in range(INLINE_ROWS_AT_MOST + 15):
        MembershipFactory(organization=organization, role=Role.MEMBER)
    members = INLINE_ROWS_AT_MOST + 16

    page = ops.get(change_url(organization)).content.decode()
    assert f"{members} members" in page
    members_list = f"{reverse('admin:orgs_membership_changelist')}?organization__id__exact="
    assert f'{members_list}{organization.pk}"' in page
    assert "memberships-TOTAL_FORMS" not in page  # no row is edited in place

    response = ops.post(change_url(organization), {"name": "Renamed", "_save": "1"})
    assert response.status_code == 302, response.content.decode()[:500]
    organization.refresh_from_db()
    assert organization.name == "Renamed"
    listed = ops.get(f"{members_list}{organization.pk}")
    assert listed.status_code == 200 and f"{members} memberships" in listed.content.decode()


def test_a_small_organizations_page_still_edits_members_in_place(ops, owner):
    organization = Organization.objects.get(memberships__user=owner)
    page = ops.get(change_url(organization)).content.decode()
    assert "memberships-TOTAL_FORMS" in page and "1 member" in page


def test_the_organization_list_counts_members_and_projects(ops, owner, project):
    MembershipFactory(organization=project.organization, role=Role.MEMBER)
    Project.objects.create(organization=project.organization, name="Second")
    page = ops.get(reverse("admin:orgs_organization_changelist")).content.decode()
    name = project.organization.name
    row = page[page.index(name) :][:2000]
    assert '<td class="field-member_count">2</td>' in row
    assert '<td class="field-project_count">2</td>' in row


@pytest.mark.parametrize("bad", ["Acme\u202egnp.exe", "x\u200b", "\u200b"])
def test_the_admin_refuses_the_names_the_api_refuses(ops, owner, project, bad):
    """Found by an integrity audit: the admin's forms saved a right-to-left override or a
    zero-width space into an organization's or a project's name, which then reached the
    dashboard and the notices' subjects."""
    organization = Organization.objects.get(memberships__user=owner)
    empty_inlines = _inline_forms("log_sources", "channels")

    renamed_project = ops.post(change_url(project), {"name": bad, **empty_inlines})
    added_project = ops.post(
        reverse("admin:projects_project_add"),
        {"name": bad, "organization": str(organization.pk), **empty_inlines},
    )
    inline = membership_inline_data(organization, {}) | _inline_forms("projects", total=1)
    inline |= {"name": bad, "projects-0-name": "Fine", "projects-0-organization": organization.pk}
    renamed_organization = ops.post(change_url(organization), inline)
    inline |= {"name": "Acme", "projects-0-name": bad}
    added_in_line = ops.post(change_url(organization), inline)

    for response in (renamed_project, added_project, renamed_organization, added_in_line):
        assert response.status_code == 200  # the form again, with its error
        assert "errorlist" in response.content.decode()
    organization.refresh_from_db()
    project.refresh_from_db()
    assert (organization.name, project.name) == ("Acme", "Checkout")
    assert not Project.objects.exclude(pk=project.pk).filter(organization=organization).exists()


def test_a_name_stored_before_the_rules_does_not_block_its_page(ops, owner, project):
    """Found by a review: the organization's page validated every project row shown, so
    a name stored before the rules kept its members from being edited."""
    organization = Organization.objects.get(memberships__user=owner)
    Project.objects.filter(pk=project.pk).update(name="Old\u202ename")
    inline = membership_inline_data(organization, {}) | _inline_forms("projects", total=1)
    inline |= {
        "name": "Acme",
        "projects-INITIAL_FORMS": "1",
        "projects-0-id": str(project.pk),
        "projects-0-organization": str(organization.pk),
        "projects-0-name": "Old\u202ename",
    }

    assert ops.post(change_url(organization), inline).status_code == 302


def test_an_operator_with_a_history_in_the_admin_is_deactivated_not_deleted(ops, superuser, member):
    """Found by an integrity audit: Django's LogEntry goes with its user (CASCADE), so one
    operator deleting another erased the other's trail, which README says stays."""
    from django.contrib.admin.models import LogEntry

    other = UserFactory(is_staff=True, is_superuser=True)
    other_ops = Client()
    other_ops.force_login(other)
    assert other_ops.post(delete_url(member), {"post": "yes"}).status_code == 302  # one change
    assert LogEntry.objects.filter(user=other).count() == 1

    single = ops.post(delete_url(other), {"post": "yes"})
    bulk = ops.post(
        changelist(User),
        {"action": "delete_selected", "_selected_action": [other.pk], "post": "yes"},
    )

    assert single.status_code == 200 and "deactivate instead" in single.content.decode()
    assert bulk.status_code == 200 and "deactivate instead" in bulk.content.decode()
    assert User.objects.filter(pk=other.pk).exists()
    assert LogEntry.objects.filter(user=other).count() == 1
    plain = UserFactory()
    assert ops.post(delete_url(plain), {"post": "yes"}).status_code == 302  # no history: goes


def test_createsuperuser_without_prompts_keeps_the_password_rules(db, monkeypatch):
    """Found by a commands audit: `DJANGO_SUPERUSER_PASSWORD=short createsuperuser
    --noinput` made an operator who can revoke any key, with a password the rules refuse."""
    from django.core.management import CommandError, call_command

    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "short")
    with pytest.raises(CommandError, match="too short"):
        call_command("createsuperuser", "--noinput", email="ops2@example.com")
    assert not User.objects.filter(email="ops2@example.com").exists()

    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a-long-operator-passphrase-2026")
    call_command("createsuperuser", "--noinput", email="ops2@example.com")
    assert User.objects.get(email="ops2@example.com").is_superuser


def test_an_operator_lifts_the_limits_others_failures_put_on_an_account(
    ops, member, api_client, throttle_clock
):
    """Past `login_account` the right password is refused too, so anyone who knows an
    address can lock its account out (an authentication audit); an operator ends that."""
    login_limit, _ = settings.THROTTLE_RATES["login_account"]
    reset_limit, _ = settings.THROTTLE_RATES["password_reset_account"]
    for n in range(login_limit):
        wrong = {"email": member.email, "password": "not-the-password"}
        api_client.post("/v1/auth/login", wrong, format="json", REMOTE_ADDR=f"203.0.113.{n + 1}")
    for n in range(reset_limit):
        api_client.post(
            "/v1/auth/password-reset",
            {"email": member.email},
            format="json",
            REMOTE_ADDR=f"203.0.113.{n + 1}",
        )
    right = {"email": member.email, "password": PASSWORD}
    owner_ip = {"format": "json", "REMOTE_ADDR": "198.51.100.9"}
    assert api_client.post("/v1/auth/login", right, **owner_ip).status_code == 429
    ask = {"email": member.email}
    assert api_client.post("/v1/auth/password-reset", ask, **owner_ip).status_code == 429

    ops.post(changelist(User), {"action": "lift_limits", "_selected_action": [member.pk]})

    assert api_client.post("/v1/auth/login", right, **owner_ip).status_code == 200
    assert api_client.post("/v1/auth/password-reset", ask, **owner_ip).status_code == 202


def test_an_operators_address_never_reaches_an_organizations_log(
    ops, superuser, owner, member, keys, organization
):
    """A privacy audit: an operator's change lands in every organization its target belongs
    to, and each one's owners read the event's IP (API and page). Through the admin the
    event names the operator, never their address, to the organization."""
    client = {"REMOTE_ADDR": "10.20.30.40", "HTTP_USER_AGENT": "OperatorBrowser/1.0"}
    secret, _ = keys["secret"]
    ops.post(changelist(ApiKey), {"action": "revoke", "_selected_action": [secret.pk]}, **client)
    ops.post(
        changelist(User), {"action": "deactivate_users", "_selected_action": [member.pk]}, **client
    )

    events = list(AuditEvent.objects.filter(actor_user=superuser))
    assert {e.action for e in events} == {Action.KEY_REVOKED, Action.MEMBER_DEACTIVATED}
    assert all(e.through_admin and e.shown_ip is None for e in events)
    page = logged_in(owner).get(f"/orgs/{organization.id}/audit-log/")
    assert page.status_code == 200
    assert breakable_email(superuser.email) in page.content.decode()  # the actor, wrappable
    assert "10.20.30.40" not in page.content.decode()
    listed = user_client(owner).get(f"/v1/organizations/{organization.id}/audit-events")
    assert listed.status_code == 200
    assert superuser.email in listed.content.decode()
    assert "10.20.30.40" not in listed.content.decode()
    # The operators keep it, in the admin, to follow a stolen staff session.
    assert [(e.ip, e.user_agent) for e in events] == [("10.20.30.40", "OperatorBrowser/1.0")] * 2
    admin_page = ops.get(changelist(AuditEvent), {"q": "10.20.30.40"}).content.decode()
    assert admin_page.count("10.20.30.40") >= 2


def test_a_members_own_change_keeps_its_address(owner, project, api_client):
    """The rule above is the admin's alone: a member's change records where it came from."""
    response = user_client(owner).post(
        f"/v1/projects/{project.id}/api-keys",
        {"name": "ci", "permissions": ["analysis:read"]},
        format="json",
        REMOTE_ADDR="203.0.113.9",
        HTTP_USER_AGENT="curl/8.5",
    )

    assert response.status_code == 201, response.content
    event = AuditEvent.objects.get(action=Action.KEY_MINTED, target_id=response.json()["id"])
    assert (event.ip, event.user_agent) == ("203.0.113.9", "curl/8.5")
