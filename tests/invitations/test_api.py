"""Invitations over the API (SPEC §4.13): invite, list, cancel, accept; the email on real SMTP."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from apps.accounts.models import User
from apps.apikeys.keyformat import KeyKind
from apps.audit.models import AuditEvent
from apps.invitations import services
from apps.invitations.models import Invitation
from apps.notifications import tasks
from apps.orgs.models import Membership, Organization
from core.permissions import Role
from tests.factories import UserFactory, make_key
from tests.orgs.helpers import ROLES, bearer_client, error_code, error_fields, user_client

pytestmark = pytest.mark.django_db


def invitations_url(organization) -> str:
    return f"/v1/organizations/{organization.id}/invitations"


def invite(client, organization, email="newcomer@example.com", role="member"):
    return client.post(invitations_url(organization), {"email": email, "role": role}, format="json")


def token_from(mail) -> str:
    path = urlsplit(mail.link("/invitations/")).path
    return path.removeprefix("/invitations/").removesuffix("/")


def accept(user, token):
    return user_client(user).post(f"/v1/invitations/{token}/accept")


def test_an_invitation_answers_the_same_whether_or_not_an_account_exists(
    owner, organization, mailbox
):
    UserFactory(email="has-account@example.com")
    client = user_client(owner)

    existing = invite(client, organization, "has-account@example.com")
    new = invite(client, organization, "no-account@example.com")

    assert existing.status_code == new.status_code == 201
    assert set(existing.json()) == set(new.json())
    body = new.json()
    assert body["email"] == "no-account@example.com" and body["role"] == "member"
    assert {"id", "email", "role", "expiresAt"} <= set(body)
    for address in ("has-account@example.com", "no-account@example.com"):
        [mail] = mailbox.messages(address)
        assert mail.subject == "You are invited to join Acme on SigSentry"
        assert owner.email in mail.text
        assert mail.link("/invitations/") in mail.html


def test_the_organizations_name_is_isolated_in_the_emails_sentences(owner, organization, mailbox):
    """A name inside a sentence is drawn in a <bdi>, as on the dashboard: a right-to-left
    name, or one stored before the name rules with an unclosed override, cannot reorder
    the words after it ("on SigSentry", "as Member")."""
    Organization.objects.filter(pk=organization.pk).update(name="شركة\u202e")

    invite(user_client(owner), organization)

    [mail] = mailbox.messages("newcomer@example.com")
    assert "Join <bdi>شركة\u202e</bdi> on SigSentry</h1>" in mail.html
    assert "the organization <strong><bdi>شركة\u202e</bdi></strong> as Member" in mail.html


def test_the_token_lives_only_in_the_email(owner, organization, mailbox, caplog):
    with caplog.at_level(logging.INFO):
        response = invite(user_client(owner), organization)
    token = token_from(mailbox.messages("newcomer@example.com")[0])

    assert len(token) >= 43
    assert token not in response.content.decode()
    invitation = Invitation.objects.get()
    assert token not in invitation.token_digest and len(invitation.token_digest) == 64
    event = AuditEvent.objects.get(action="member.invited")
    assert token not in str(event.details) and event.target_label == "newcomer@example.com"
    assert token not in caplog.text


def test_an_invitation_to_an_address_that_folds_to_another_is_refused(owner, organization, mailbox):
    response = invite(user_client(owner), organization, "anna@stra\u00dfe.de")

    assert response.status_code == 400
    assert "Use its plain spelling" in error_fields(response)["email"][0]
    assert not Invitation.objects.exists()
    assert mailbox.messages("anna@strasse.de") == []


def test_invitations_are_valid_seven_days(owner, organization):
    body = invite(user_client(owner), organization).json()
    invitation = Invitation.objects.get(id=body["id"])
    assert invitation.expires_at - invitation.created_at == timedelta(days=7)


@pytest.mark.parametrize("role", ROLES)
def test_only_owners_and_admins_invite_list_and_cancel(request, role, organization, owner):
    pending = invite(user_client(owner), organization, "pending@example.com").json()
    client = user_client(request.getfixturevalue(role))

    created = invite(client, organization, "someone@example.com")
    listed = client.get(invitations_url(organization))
    cancelled = client.delete(f"{invitations_url(organization)}/{pending['id']}")

    expected = {"owner": 201, "admin": 201, "outsider": 404}.get(role, 403)
    assert created.status_code == expected
    assert listed.status_code == (200 if expected == 201 else expected)
    assert cancelled.status_code == (204 if expected == 201 else expected)


def test_api_keys_cannot_invite_or_accept(project, organization):
    _key, plaintext = make_key(KeyKind.ORGANIZATION, organization=organization)
    client = bearer_client(plaintext)
    response = invite(client, organization)
    assert response.status_code == 403 and error_code(response) == "KEY_MANAGEMENT_FORBIDDEN"
    accept_answer = client.post("/v1/invitations/anything/accept")
    assert accept_answer.status_code == 403
    assert not Invitation.objects.exists()


def test_admins_cannot_invite_owners(admin, organization):
    response = invite(user_client(admin), organization, role="owner")
    assert response.status_code == 403 and error_code(response) == "PERMISSION_DENIED"
    assert not Invitation.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email", "role": "member"}, "email"),
        ({"email": "", "role": "member"}, "email"),
        ({"email": "x@example.com", "role": "boss"}, "role"),
        ({"role": "member"}, "email"),
    ],
)
def test_bad_invitations_are_validation_errors(owner, organization, body, field):
    response = user_client(owner).post(invitations_url(organization), body, format="json")
    assert response.status_code == 400 and field in error_fields(response)


def test_inviting_a_member_is_an_error(owner, member, organization):
    response = invite(user_client(owner), organization, member.email.upper())
    assert response.status_code == 400 and "email" in error_fields(response)


def test_inviting_again_replaces_the_pending_invitation(owner, organization, mailbox):
    client = user_client(owner)
    invite(client, organization)
    first_token = token_from(mailbox.messages("newcomer@example.com")[0])
    mailbox.clear()
    invite(client, organization, role="viewer")
    second_token = token_from(mailbox.messages("newcomer@example.com")[0])
    newcomer = UserFactory(email="newcomer@example.com")

    assert accept(newcomer, first_token).status_code == 404
    assert accept(newcomer, second_token).json()["role"] == "viewer"


def test_inviting_again_audits_the_replaced_invitation_as_cancelled(owner, organization):
    client = user_client(owner)
    first = invite(client, organization, "newcomer@example.com", "member").json()
    second = invite(client, organization, "Newcomer@Example.com", "viewer").json()

    [event] = AuditEvent.objects.filter(action="member.invitation_cancelled")
    assert (event.target_type, event.target_id, event.target_label) == (
        "invitation",
        first["id"],
        "newcomer@example.com",
    )
    assert event.actor_user == owner
    assert event.details == {"role": "member", "reason": "replaced", "replacedBy": second["id"]}
    cancelled = Invitation.objects.filter(cancelled_at__isnull=False)
    assert [str(i.id) for i in cancelled] == [first["id"]]
    assert AuditEvent.objects.filter(action="member.invited").count() == 2


def test_a_replaced_invitation_and_its_audit_event_are_written_together(
    owner, organization, monkeypatch
):
    inviter = Membership.objects.get(organization=organization, user=owner)
    first = services.invite_member(
        actor_membership=inviter, email="newcomer@example.com", role="member"
    )

    def audit_fails(*args, **kwargs):
        raise RuntimeError("audit log unavailable")

    monkeypatch.setattr(services, "record_events", audit_fails)
    with pytest.raises(RuntimeError):
        services.invite_member(
            actor_membership=inviter, email="newcomer@example.com", role="viewer"
        )

    assert [i.id for i in Invitation.objects.all()] == [first.id]
    assert Invitation.objects.get().cancelled_at is None
    assert not AuditEvent.objects.filter(action="member.invitation_cancelled").exists()


def test_inviting_again_after_an_invitation_expired_cancels_nothing(owner, organization):
    client = user_client(owner)
    first = invite(client, organization).json()
    Invitation.objects.filter(id=first["id"]).update(expires_at=timezone.now())

    assert invite(client, organization).status_code == 201

    assert Invitation.objects.get(id=first["id"]).cancelled_at is None
    assert not AuditEvent.objects.filter(action="member.invitation_cancelled").exists()


@override_settings(THROTTLE_RATES=settings.THROTTLE_RATES | {"invite_org": (2, 3600)})
def test_invitations_are_throttled_per_organization(owner, organization):
    client = user_client(owner)
    statuses = [invite(client, organization, f"p{n}@example.com").status_code for n in range(3)]
    assert statuses == [201, 201, 429]


@override_settings(THROTTLE_RATES=settings.THROTTLE_RATES | {"invite_user": (2, 3600)})
def test_invitations_are_throttled_per_inviter_across_organizations(owner, organization):
    """Found by an audit: each new organization had its own 50 invitations an hour, mail
    carrying a name its creator chose to any address."""
    client = user_client(owner)
    second = client.post("/v1/organizations", {"name": "Second"}, format="json").json()
    sent = [
        invite(client, organization, "a@example.com").status_code,
        client.post(
            f"/v1/organizations/{second['id']}/invitations",
            {"email": "b@example.com", "role": "member"},
            format="json",
        ).status_code,
        invite(client, organization, "c@example.com").status_code,
    ]

    assert sent == [201, 201, 429]
    assert Invitation.objects.count() == 2


@override_settings(THROTTLE_RATES=settings.THROTTLE_RATES | {"invite_unconfirmed_user": (2, 86400)})
def test_an_inviter_whose_address_is_unconfirmed_has_a_days_few_and_is_named_so(
    owner, organization, mailbox
):
    """Found by an email audit: anyone can sign up with any address (a colleague's, a
    CEO's) and have invitations mailed in its name, with an organization name they chose."""
    owner.email_confirmed_at = None
    owner.save(update_fields=["email_confirmed_at"])
    client = user_client(owner)

    statuses = [invite(client, organization, f"p{n}@example.com").status_code for n in range(3)]

    assert statuses == [201, 201, 429]
    refused = invite(client, organization, "p3@example.com")
    assert "Confirm your email address" in refused.json()["error"]["message"]
    [mail] = mailbox.messages("p0@example.com")
    # Said before "invited you", in both parts: never "<address> invited you" as if shown.
    for part in ("plain", "html"):
        body = mail.message.get_body(preferencelist=(part,)).get_content()
        assert f"{owner.email} (this address is not confirmed) invited you" in body, part
        assert f"{owner.email} invited you" not in body, part


def test_a_confirmed_inviter_is_named_plainly_and_not_held_to_the_unconfirmed_few(
    owner, organization, mailbox
):
    client = user_client(owner)
    for n in range(11):
        assert invite(client, organization, f"p{n}@example.com").status_code == 201
    [mail] = mailbox.messages("p0@example.com")
    text = mail.message.get_body(preferencelist=("plain",)).get_content()
    assert f"{owner.email} invited you" in text and "not confirmed" not in text


@override_settings(THROTTLE_RATES=settings.THROTTLE_RATES | {"invite_address": (2, 86400)})
def test_invitations_to_one_address_are_throttled_whoever_sends_them(owner, organization):
    """Found by the DoS audit: free accounts, each with its own 50 an hour, mailed one
    address 150 invitations in 5 s, their organization's name a subject of their choosing."""
    strangers = [user_client(UserFactory()) for _ in range(3)]
    organizations = [
        client.post("/v1/organizations", {"name": "FREE PRIZE"}, format="json").json()["id"]
        for client in strangers
    ]
    sent = [
        client.post(
            f"/v1/organizations/{org_id}/invitations",
            {"email": "Victim@Example.com", "role": "viewer"},
            format="json",
        ).status_code
        for client, org_id in zip(strangers, organizations, strict=True)
    ]

    assert sent == [201, 201, 429]
    assert Invitation.objects.count() == 2
    assert invite(user_client(owner), organization, "victim@example.com").status_code == 429
    assert invite(user_client(owner), organization, "someone@example.com").status_code == 201


def test_list_shows_pending_invitations_only(owner, organization):
    client = user_client(owner)
    kept = invite(client, organization, "kept@example.com").json()
    gone = invite(client, organization, "gone@example.com").json()
    old = invite(client, organization, "old@example.com").json()
    client.delete(f"{invitations_url(organization)}/{gone['id']}")
    Invitation.objects.filter(id=old["id"]).update(expires_at=timezone.now())

    results = client.get(invitations_url(organization)).json()["results"]

    assert [r["id"] for r in results] == [kept["id"]]
    assert results[0]["invitedBy"] == {"id": str(owner.id), "email": owner.email}


def test_cancelling_kills_the_link_and_is_audited(owner, organization, mailbox):
    client = user_client(owner)
    created = invite(client, organization).json()
    token = token_from(mailbox.messages("newcomer@example.com")[0])

    assert client.delete(f"{invitations_url(organization)}/{created['id']}").status_code == 204
    assert client.delete(f"{invitations_url(organization)}/{created['id']}").status_code == 404
    event = AuditEvent.objects.get(action="member.invitation_cancelled")
    assert event.target_id == created["id"] and event.actor_user == owner
    newcomer = UserFactory(email="newcomer@example.com")
    assert accept(newcomer, token).status_code == 404


def test_another_organizations_invitation_cannot_be_cancelled(owner, organization, outsider):
    created = invite(user_client(owner), organization).json()
    other_org = Membership.objects.get(user=outsider).organization
    client = user_client(outsider)
    response = client.delete(f"{invitations_url(other_org)}/{created['id']}")
    assert response.status_code == 404
    assert Invitation.objects.get(id=created["id"]).cancelled_at is None
    garbage = client.delete(f"{invitations_url(other_org)}/not-a-uuid")
    assert garbage.status_code == 404


# Accepting -----------------------------------------------------------------------------


def test_the_invitee_accepts_and_becomes_a_member(owner, organization, mailbox):
    client = user_client(owner)
    invite(client, organization, "Newcomer@Example.com", role="admin")
    token = token_from(mailbox.wait_for("Newcomer@Example.com")[0])  # as typed
    newcomer = UserFactory(email="newcomer@example.com")

    response = accept(newcomer, token)

    assert response.status_code == 200
    assert response.json() == {
        "organization": {"id": str(organization.id), "name": "Acme"},
        "role": "admin",
    }
    assert Membership.objects.get(organization=organization, user=newcomer).role == Role.ADMIN
    assert client.get(invitations_url(organization)).json()["results"] == []
    event = AuditEvent.objects.get(action="member.added")
    assert event.target_id == str(newcomer.id) and event.details["role"] == "admin"
    assert accept(newcomer, token).status_code == 200  # accepting again is harmless
    assert AuditEvent.objects.filter(action="member.added").count() == 1


def test_a_stranger_cannot_accept(owner, organization, mailbox, outsider):
    invite(user_client(owner), organization)
    token = token_from(mailbox.messages("newcomer@example.com")[0])

    response = accept(outsider, token)

    assert response.status_code == 404 and error_code(response) == "NOT_FOUND"
    assert not Membership.objects.filter(organization=organization, user=outsider).exists()
    newcomer = UserFactory(email="newcomer@example.com")
    assert accept(newcomer, token).status_code == 200  # still pending for the invitee
    assert accept(outsider, token).status_code == 404  # nor after it was used


def test_look_alike_spellings_are_the_same_invitee(owner, organization, mailbox):
    invite(user_client(owner), organization, "\uff4eewcomer@EXAMPLE.com")  # full-width n
    token = token_from(mailbox.messages("newcomer@EXAMPLE.com")[0])
    assert accept(UserFactory(email="newcomer@example.com"), token).status_code == 200


def test_an_expired_invitation_cannot_be_accepted(owner, organization, mailbox):
    invite(user_client(owner), organization)
    token = token_from(mailbox.messages("newcomer@example.com")[0])
    Invitation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = accept(UserFactory(email="newcomer@example.com"), token)
    assert response.status_code == 404
    assert Membership.objects.filter(organization=organization).count() == 1


@pytest.mark.parametrize(
    "token", ["garbage", "x" * 300, pytest.param(str(uuid.uuid4()), id="unknown")]
)
def test_unknown_tokens_are_404(owner, token):
    assert accept(owner, token).status_code == 404


def test_an_existing_member_keeps_their_role(owner, organization, mailbox):
    invite(user_client(owner), organization, "later@example.com", role="viewer")
    token = token_from(mailbox.messages("later@example.com")[0])
    later = UserFactory(email="later@example.com")
    Membership.objects.create(organization=organization, user=later, role=Role.ADMIN)
    assert accept(later, token).json()["role"] == "admin"


def test_signing_up_then_accepting_over_the_api(owner, organization, mailbox, api_client):
    invite(user_client(owner), organization, "fresh@example.com")
    token = token_from(mailbox.messages("fresh@example.com")[0])
    signup = api_client.post(
        "/v1/auth/signup",
        {
            "email": "fresh@example.com",
            "password": "fresh-person-passphrase",
            "organizationName": "Mine",
        },
        format="json",
    )
    access = signup.json()["access"]

    response = bearer_client(access).post(f"/v1/invitations/{token}/accept")

    assert response.status_code == 200
    fresh = User.objects.get(email="fresh@example.com")
    assert Membership.objects.get(organization=organization, user=fresh).role == Role.MEMBER


# Retention (the worker's daily housekeeping) -------------------------------------------------


def test_housekeeping_deletes_invitations_30_days_after_they_stopped_being_pending(
    owner, organization, mailbox, time_machine
):
    time_machine.move_to(timezone.now(), tick=False)
    client = user_client(owner)
    cancelled = invite(client, organization, "cancelled@example.com").json()["id"]
    cancelled_token = token_from(mailbox.messages("cancelled@example.com")[0])
    client.delete(f"{invitations_url(organization)}/{cancelled}")
    accepted = invite(client, organization, "accepted@example.com").json()["id"]
    accepted_token = token_from(mailbox.messages("accepted@example.com")[0])
    assert accept(UserFactory(email="accepted@example.com"), accepted_token).status_code == 200
    expired = invite(client, organization, "expired@example.com").json()["id"]
    audited = list(AuditEvent.objects.values_list("id", flat=True))
    retention = services.FINISHED_INVITATION_RETENTION
    invitee = UserFactory(email="cancelled@example.com")
    dead_link = accept(invitee, cancelled_token)
    assert dead_link.status_code == 404

    def invitations_after_housekeeping() -> set[str]:
        tasks.housekeeping.call()
        return {str(i) for i in Invitation.objects.values_list("id", flat=True)}

    time_machine.shift(retention - timedelta(hours=1))
    client = user_client(owner)  # a month on: a new login
    newer = invite(client, organization, "newer@example.com").json()["id"]
    assert invitations_after_housekeeping() == {cancelled, accepted, expired, newer}

    time_machine.shift(timedelta(hours=2))
    assert invitations_after_housekeeping() == {expired, newer}
    listed = client.get(invitations_url(organization)).json()["results"]
    assert [r["id"] for r in listed] == [newer]
    again = accept(invitee, cancelled_token)  # the row is gone: the same answer
    assert (again.status_code, again.json()) == (404, dead_link.json())

    time_machine.shift(services.INVITATION_LIFETIME)  # `expired` expired 30 days ago
    assert invitations_after_housekeeping() == {newer}  # expired 2 hours ago
    assert set(audited) <= set(AuditEvent.objects.values_list("id", flat=True))
