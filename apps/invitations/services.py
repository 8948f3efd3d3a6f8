"""Inviting people to an organization by email, and accepting (SPEC §4.13).

* The token is 32 random bytes from `secrets` (URL-safe base64); only its
  SHA-256 digest is stored. It exists in the invitation email's link only:
  never in an API answer, a log line, an audit event or a queued task (a failed
  send is retried by the worker with a new token, `_invitation_letter_again`).
* Inviting answers the same whether or not an account uses the address, so the
  invitation form cannot be used to find out who has an account.
* An invitation is valid seven days and accepted once, by a user whose
  normalized email (NFKC, case-folded) equals the invited one's; to anyone else
  it does not exist (404). Inviting an address again replaces its pending
  invitation (the old link dies; audited as a cancel with reason `replaced`).
* An invitation grants its role only while its inviter may still grant it
  (`selectors.roles_grantable_by`): removing, demoting or deactivating the inviter
  cancels the ones they no longer could send (`_cancel_what_the_inviter_may_no_longer_send`,
  run by `apps.orgs.services.membership_changed`), and accepting checks it
  again, so one left pending some other way dies too (404, as a cancelled one);
  a retry of its email then builds nothing.
* Audit events: `member.invited`, `member.invitation_cancelled`, and
  `member.added` when the invitee joins. They stay; the invitation itself (the
  invitee's address) is deleted 30 days after it was accepted, cancelled or expired
  (`prune_finished_invitations`, the worker's daily housekeeping).
"""

from __future__ import annotations

import hmac
import secrets
import unicodedata
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone

from apps.accounts import email_confirmation, mail
from apps.accounts.emails import address_refusal, normalize_email
from apps.accounts.models import User
from apps.accounts.services import account_to_create, create_account, start_session
from apps.accounts.tokens import TokenPair
from apps.audit.models import AuditEvent
from apps.audit.services import Action, audit_event, record_event, record_events
from apps.invitations.models import Invitation
from apps.invitations.selectors import (
    invitation_for_token,
    invitation_for_user,
    inviter_may_still_grant,
    membership_from_accepting,
    pending_at,
    roles_grantable_by,
    still_open,
    token_digest,
)
from apps.orgs.access import manager_role_now
from apps.orgs.models import Membership, Organization
from apps.orgs.services import on_membership_change
from core import throttling
from core.errors import NotFound, PermissionDenied, ValidationFailed
from core.permissions import MANAGER_ROLES, REQUIRES_ADMIN, REQUIRES_OWNER, Role
from core.validation import parse_uuid

INVITATION_LIFETIME = timedelta(days=7)
UNCONFIRMED_INVITER_LIMIT = (
    "Confirm your email address (on your account page) to send more invitations today."
)
#: How long an invitation that stopped being pending (accepted, cancelled, expired) is
#: kept with the invitee's address; the audit events about it stay.
FINISHED_INVITATION_RETENTION = timedelta(days=30)
MAX_EMAIL_LENGTH = 254
#: Pending invitations an organization holds (a bounds audit: `invite_org`'s 50 an hour
#: held up to 8,400 pending, each an email sent and a link that works for 7 days). A new
#: invitation to an address already invited replaces it, so it is never refused.
MAX_PENDING_INVITATIONS_PER_ORGANIZATION = 1_000


def _clean_email(value: Any) -> str:
    """The address as typed, in NFKC (full-width letters become ASCII) but not case-folded;
    one that folding would change (`ß` becomes `ss`) or mail would reach under other text
    is refused, as at sign-up (`address_refusal`)."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed({"email": ["An email address is required."]})
    email = unicodedata.normalize("NFKC", value.strip())
    if refusal := address_refusal(email):
        raise ValidationFailed({"email": [refusal]})
    if len(email) > MAX_EMAIL_LENGTH or len(normalize_email(email)) > MAX_EMAIL_LENGTH:
        raise ValidationFailed({"email": ["Enter a valid email address."]})
    try:
        validate_email(email)
        validate_email(normalize_email(email))
    except DjangoValidationError as exc:
        raise ValidationFailed({"email": ["Enter a valid email address."]}) from exc
    return email


def _clean_role(value: Any, actor_role: str) -> str:
    if value not in Role.values:
        raise ValidationFailed({"role": [f"One of: {', '.join(Role.values)}."]})
    if value not in roles_grantable_by(actor_role):
        raise PermissionDenied(REQUIRES_OWNER, "Only owners can invite owners.")
    return value


def _is_member(organization_id: Any, email: str) -> bool:
    """Whether the account of `email` (normalized, as stored) is a member already."""
    return Membership.objects.filter(organization_id=organization_id, user__email=email).exists()


def invite_member(
    *,
    actor_membership: Membership,
    email: Any,
    role: Any,
    request: HttpRequest | None = None,
) -> Invitation:
    """Invite `email` as `role` and mail them the link. Owners and admins; owners by owners only."""
    if actor_membership.role not in MANAGER_ROLES:
        raise PermissionDenied(REQUIRES_ADMIN, "Only owners and admins can do this.")
    organization = actor_membership.organization
    errors: dict[str, list[str]] = {}
    clean: dict[str, str] = {}
    for field, cleaner in (
        ("email", lambda: _clean_email(email)),
        ("role", lambda: _clean_role(role, actor_membership.role)),
    ):
        try:
            clean[field] = cleaner()
        except ValidationFailed as exc:
            errors.update(exc.details["fields"])
    if errors:
        raise ValidationFailed(errors)
    address, role = clean["email"], clean["role"]
    normalized = normalize_email(address)
    if _is_member(organization.id, normalized):
        raise ValidationFailed({"email": ["This person is already a member."]})
    throttling.enforce("invite_org", str(organization.id))
    throttling.enforce("invite_user", str(actor_membership.user_id))
    if not email_confirmation.is_confirmed(actor_membership.user):
        throttling.enforce(
            "invite_unconfirmed_user", str(actor_membership.user_id), UNCONFIRMED_INVITER_LIMIT
        )
    # Per address, whoever invites: free accounts, each with its own hourly budget, mailed
    # one address 150 invitations in 5 s (found by the DoS audit).
    throttling.enforce("invite_address", normalized)
    token = secrets.token_urlsafe(32)
    now = timezone.now()
    with transaction.atomic():
        # Invitations of one organization wait for each other here, so a second one to
        # the same address sees the first committed and cancels it. NO KEY: this lock does
        # not hold up rows that merely refer to the organization (an accepted membership).
        Organization.objects.select_for_update(no_key=True).filter(pk=organization.pk).exists()
        # The inviter's role as it is now (a demotion a moment ago counts).
        _clean_role(role, manager_role_now(actor_membership.user, organization.id))
        pending = Invitation.objects.filter(pending_at(now), organization=organization)
        if (
            pending.exclude(normalized_email=normalized).count()
            >= MAX_PENDING_INVITATIONS_PER_ORGANIZATION
        ):
            raise ValidationFailed(
                {
                    "email": [
                        f"At most {MAX_PENDING_INVITATIONS_PER_ORGANIZATION:,} pending "
                        "invitations per organization: cancel some first."
                    ]
                }
            )
        # Locked: a cancel by hand or by the inviter's removal at the same moment waits,
        # then finds it no longer pending, so each replaced invitation is cancelled once.
        replaced = list(
            Invitation.objects.select_for_update()
            .filter(pending_at(now), organization=organization, normalized_email=normalized)
            .order_by("created_at", "id")
        )
        Invitation.objects.filter(pk__in=[old.pk for old in replaced]).update(cancelled_at=now)
        invitation = Invitation.objects.create(
            organization=organization,
            email=address,
            normalized_email=normalized,
            role=role,
            token_digest=token_digest(token),
            invited_by=actor_membership.user,
            created_at=now,
            expires_at=now + INVITATION_LIFETIME,
        )
        replaced_by = {"reason": "replaced", "replacedBy": str(invitation.id)}
        record_events(
            [_cancelled_event(old, actor_membership.user, request, replaced_by) for old in replaced]
        )
        record_event(
            action=Action.MEMBER_INVITED,
            organization_id=organization.id,
            actor_user=actor_membership.user,
            target_type="invitation",
            target_id=invitation.id,
            target_label=address,
            request=request,
            details={"role": role},
        )
    mail.send_invitation(letter=_letter(invitation, token), invitation_id=invitation.id)
    return invitation


def _letter(invitation: Invitation, token: str) -> mail.Letter:
    inviter = invitation.invited_by
    return mail.invitation_letter(
        to=invitation.email,
        token=token,
        organization_name=invitation.organization.name,
        inviter_email=inviter.email if inviter else None,
        inviter_confirmed=inviter is not None and email_confirmation.is_confirmed(inviter),
        role_label=Role(invitation.role).label,
        expires_at=invitation.expires_at,
    )


@mail.rebuilds("invitation", retry_for=INVITATION_LIFETIME)
def _invitation_letter_again(ids: dict) -> mail.Letter | None:
    """A retry issues a new link: the token was never stored, so the pending invitation's
    digest is replaced (the link of an earlier try, should it have arrived after all, dies);
    nothing once the invitation was accepted, cancelled or has expired, or once its inviter
    may no longer send it (the accept would refuse it: the link would not work)."""
    invitation = (
        Invitation.objects.select_related("organization", "invited_by")
        .filter(pk=ids["invitation_id"])
        .first()
    )
    if not still_open(invitation):
        return None
    token = secrets.token_urlsafe(32)
    replaced = Invitation.objects.filter(
        pk=invitation.pk,
        token_digest=invitation.token_digest,
        accepted_at__isnull=True,
        cancelled_at__isnull=True,
    ).update(token_digest=token_digest(token))
    return _letter(invitation, token) if replaced else None


def cancel_invitation(
    *, actor_membership: Membership, invitation_id: Any, request: HttpRequest | None = None
) -> None:
    """Cancel a pending invitation of the caller's organization; its link dies. 404 otherwise."""
    if actor_membership.role not in MANAGER_ROLES:
        raise PermissionDenied(REQUIRES_ADMIN, "Only owners and admins can do this.")
    now = timezone.now()
    with transaction.atomic():
        manager_role_now(actor_membership.user, actor_membership.organization_id)
        invitation = (
            Invitation.objects.select_for_update()
            .filter(
                pending_at(now),
                organization_id=actor_membership.organization_id,
                pk=_uuid_or_404(invitation_id),
            )
            .first()
        )
        if invitation is None:
            raise NotFound()
        invitation.cancelled_at = now
        invitation.save(update_fields=["cancelled_at"])
        record_events([_cancelled_event(invitation, actor_membership.user, request, {})])


def _cancelled_event(
    invitation: Invitation,
    actor_user: Any,
    request: HttpRequest | None,
    details: dict[str, Any],
) -> AuditEvent:
    return audit_event(
        action=Action.MEMBER_INVITATION_CANCELLED,
        organization_id=invitation.organization_id,
        actor_user=actor_user,
        target_type="invitation",
        target_id=invitation.id,
        target_label=invitation.email,
        request=request,
        details={"role": invitation.role} | details,
    )


@on_membership_change
def _cancel_what_the_inviter_may_no_longer_send(
    *,
    membership: Membership,
    role: str | None,
    actor_user: Any,
    request: HttpRequest | None = None,
    deactivated: bool = False,
) -> None:
    """Cancel the pending invitations `membership`'s user sent that `role` may not send
    (None: they are no longer a member, or their account was deactivated), in the
    transaction that removes, demotes or deactivates them.

    An invitation acts with its inviter's authority: left pending after they lose it, it
    would still grant the role (an owner about to be removed invites their own second
    address, which accepts and is owner again), and a retry of its email would mail a new
    link. Each is audited as a cancel by hand is, with whoever removed, demoted or
    deactivated them as actor (the system, for a deactivation without one) and the
    reason in the details.
    """
    now = timezone.now()
    invitations = list(
        Invitation.objects.select_for_update()
        .filter(
            pending_at(now),
            organization_id=membership.organization_id,
            invited_by_id=membership.user_id,
        )
        .exclude(role__in=sorted(roles_grantable_by(role)))
        .order_by("created_at", "id")
    )
    if not invitations:
        return
    Invitation.objects.filter(pk__in=[i.pk for i in invitations]).update(cancelled_at=now)
    if deactivated:
        reason = "inviter_deactivated"
    else:
        reason = "inviter_removed" if role is None else "inviter_role_changed"
    record_events(
        [_cancelled_event(i, actor_user, request, {"reason": reason}) for i in invitations]
    )


def prune_finished_invitations(*, now: datetime | None = None) -> int:
    """Delete the invitations accepted, cancelled or expired more than
    FINISHED_INVITATION_RETENTION ago, with the address each holds; the number deleted.
    The worker's daily housekeeping runs it.

    Nothing refers to an invitation row (the audit events name it by id and address in
    their own columns) and no page lists one that is no longer pending. Its link, opened
    later, gets the page of a dead link (an accepted one's invitee is then no longer told
    they joined already).
    """
    cutoff = (now or timezone.now()) - FINISHED_INVITATION_RETENTION
    deleted, _ = Invitation.objects.filter(
        Q(accepted_at__lte=cutoff) | Q(cancelled_at__lte=cutoff) | Q(expires_at__lte=cutoff)
    ).delete()
    return deleted


def _uuid_or_404(value: Any) -> uuid.UUID:
    try:
        return parse_uuid(value)
    except ValueError as exc:
        raise NotFound() from exc


def accept_invitation(*, user: User, token: Any, request: HttpRequest | None = None) -> Membership:
    """Join the organization with the invited role; the invitation is used up.

    Accepting twice is harmless, one after the other or at the same moment (the
    second answer is the same membership).
    Someone who already belongs to the organization keeps their role. An
    invitation whose inviter may no longer grant its role (removed, demoted, or
    their account deleted) is refused as a cancelled one is: removing them
    cancels it, and this also covers one left pending by any other write.
    """
    invitation = invitation_for_token(token)
    if invitation is not None and normalize_email(user.email) == invitation.normalized_email:
        membership = membership_from_accepting(invitation, user)
        if membership is not None:
            return membership
    invitation = invitation_for_user(token, user)
    try:
        membership = _join(invitation, user, request)
    except IntegrityError:
        # Its foreign key, checked as it commits, found no account: deleted meanwhile (the
        # deletion held the user row, which the check waited for). Their session went too.
        if User.objects.filter(pk=user.pk).exists():
            raise
        raise NotFound("This invitation does not exist, has expired or was already used.") from None
    membership.organization = invitation.organization
    return membership


def _join(invitation: Invitation, user: User, request: HttpRequest | None) -> Membership:
    """`accept_invitation`'s transaction: the membership, made or found."""
    now = timezone.now()
    with transaction.atomic():
        # The inviter's membership is locked before the invitation, in the order removing
        # or demoting them takes (membership, then their invitations): a concurrent change
        # either commits first and is seen here, or waits until this accept is done.
        inviter_may_grant = inviter_may_still_grant(invitation, lock=True)
        locked = Invitation.objects.select_for_update().get(pk=invitation.pk)
        # Under the lock, the token must still be the invitation's: a retried email may
        # have replaced it (`_invitation_letter_again`) since the lookup.
        same_token = hmac.compare_digest(locked.token_digest, invitation.token_digest)
        # The same user's simultaneous accept got here first: answer as a repeat does.
        membership = membership_from_accepting(locked, user) if same_token else None
        if membership is not None:
            membership.organization = invitation.organization
            return membership
        if not inviter_may_grant or not locked.is_pending(now) or not same_token:
            raise NotFound("This invitation does not exist, has expired or was already used.")
        membership, created = Membership.objects.get_or_create(
            organization_id=locked.organization_id, user=user, defaults={"role": locked.role}
        )
        locked.accepted_at = now
        locked.accepted_by = user
        locked.save(update_fields=["accepted_at", "accepted_by"])
        # The invitation's link reached the address's mailbox: its owner is the account's.
        email_confirmation.mark_confirmed(user, now)
        if created:
            record_event(
                action=Action.MEMBER_ADDED,
                organization_id=locked.organization_id,
                actor_user=user,
                target_type="user",
                target_id=user.pk,
                target_label=user.email,
                request=request,
                details={"role": locked.role, "invitationId": str(locked.pk)},
            )
    return membership


def sign_up_and_accept(
    *, token: Any, password: Any, request: HttpRequest | None = None
) -> tuple[Membership, TokenPair]:
    """A new account for the invited email, in the organization at once, logged in."""
    invitation = invitation_for_token(token)
    # An inviter's lapsed authority is checked before the account is made, so such an
    # invitation answers as a cancelled one does (`accept_invitation` checks it again).
    if not still_open(invitation):
        raise NotFound("This invitation does not exist, has expired or was already used.")
    account = account_to_create(email=invitation.email, password=password, request=request)
    with transaction.atomic():
        user = create_account(account)
        membership = accept_invitation(user=user, token=token, request=request)
        pair = start_session(user, request)
    return membership, pair
