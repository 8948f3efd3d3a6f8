"""Writes on organizations, memberships and projects, with their role rules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.http import HttpRequest

from apps.audit.services import Action, record_event
from apps.orgs.access import account_active_now, accounts_active_now, manager_role_now
from apps.orgs.models import Membership, Organization
from core import throttling
from core.errors import LastOwner, NotFound, PermissionDenied, ValidationFailed
from core.net import client_ip
from core.permissions import MANAGER_ROLES, REQUIRES_ADMIN, REQUIRES_OWNER, Role
from core.queries import refuse_when_full
from core.validation import clean_name

MIN_KEY_LIFETIME_DAYS = 1
MAX_KEY_LIFETIME_DAYS = 3650
#: Organizations a user may be in and still create another: `create_org_user` (20 a day)
#: bounds a day, not a year (7,300), and each organization has its own projects, keys,
#: webhooks and invitations. Five times the largest membership the tests model (a user in
#: 200 organizations). Being added or accepting an invitation is not refused: those are
#: other organizations' choices.
MAX_ORGANIZATIONS_PER_USER = 1_000


def _clean_role(value: Any) -> str:
    if value not in Role.values:
        raise ValidationFailed({"role": [f"One of: {', '.join(Role.values)}."]})
    return value


def create_organization(
    *, actor: Any, name: Any, request: HttpRequest | None = None
) -> Organization:
    """A new organization owned by `actor`; 429 RATE_LIMITED past `create_org_user` a day
    (each organization may send its own invitations), 400 VALIDATION_ERROR on `name` once
    `actor` is a member of MAX_ORGANIZATIONS_PER_USER (their creations at the same moment
    wait for each other on their account's row, so the bound is exact)."""
    name = clean_name(name)
    throttling.enforce("create_org_user", str(actor.pk))
    with transaction.atomic():
        refuse_when_full(
            get_user_model().objects.filter(pk=actor.pk),
            Membership.objects.filter(user_id=actor.pk),
            MAX_ORGANIZATIONS_PER_USER,
            "name",
            f"At most {MAX_ORGANIZATIONS_PER_USER:,} organizations per user: leave one first.",
        )
        organization = Organization.objects.create(name=name)
        Membership.objects.create(organization=organization, user=actor, role=Role.OWNER)
        record_organization_created(organization, actor=actor, request=request)
    return organization


def record_organization_created(
    organization: Organization, *, actor: Any, request: HttpRequest | None
) -> None:
    """The `organization.created` audit event, in the caller's transaction: a sign-up's or
    a member's new organization, or an operator's in the admin (found by an audit-log
    audit: the admin's recorded its members and projects, not itself)."""
    _record_organization_event(Action.ORGANIZATION_CREATED, organization, actor, request)


def record_organization_updated(
    organization: Organization,
    field: str,
    change: tuple[Any, Any],
    *,
    actor: Any,
    request: HttpRequest | None,
) -> None:
    """The `organization.updated` audit event of one field's change (its settings by an
    owner, its name by an operator in the admin): `change` is (before, after), in the
    caller's transaction."""
    details = {"fields": [field], "before": {field: change[0]}, "after": {field: change[1]}}
    _record_organization_event(Action.ORGANIZATION_UPDATED, organization, actor, request, details)


def record_audit_log_exported(
    organization: Organization,
    *,
    actor: Any,
    request: HttpRequest | None,
    file_format: str,
    action: str | None,
) -> None:
    """The `audit_log.exported` event of a download of the log (`file_format` "csv" or
    "jsonl", `action` the filter or None), in the caller's transaction: a download copies
    every member's address and IPs out of the product at once, which the organization's
    owners should be able to see was done, and by whom."""
    details = {"format": file_format, "action": action}
    _record_organization_event(Action.AUDIT_LOG_EXPORTED, organization, actor, request, details)


def _record_organization_event(
    action: str,
    organization: Organization,
    actor: Any,
    request: HttpRequest | None,
    details: dict[str, Any] | None = None,
) -> None:
    """An event whose target is the organization itself."""
    record_event(
        action=action,
        organization_id=organization.id,
        actor_user=actor,
        target_type="organization",
        target_id=organization.id,
        target_label=organization.name,
        request=request,
        details=details,
    )


def lock_owners(organization_id: Any) -> list[Membership]:
    """Lock the organization's owner rows, serialising changes that could remove the last one."""
    return list(
        Membership.objects.select_for_update()
        .filter(organization_id=organization_id, role=Role.OWNER)
        .order_by("id")
    )


def _leaves_no_active_owner(owners: list[Membership], target: Membership) -> bool:
    """Whether demoting or removing `target` leaves no owner whose account is active. Under
    the owners' locks (`lock_owners`), read in a statement of its own as
    `account_active_now` is: an owner deactivated meanwhile is no owner to keep, since a
    deactivated account cannot act and nobody else may make owners."""
    if target.role != Role.OWNER:
        return False
    return not accounts_active_now(owner.user_id for owner in owners if owner.pk != target.pk)


def _last_owner(owners: list[Membership]) -> LastOwner:
    if len(owners) <= 1:
        return LastOwner()
    return LastOwner(
        message="An organization must keep at least one owner who can act: "
        "the other owners' accounts are deactivated."
    )


def _guard_target(actor_membership: Membership, target: Membership) -> None:
    # Admins manage members and admins, never owners.
    if actor_membership.role != Role.OWNER and target.role == Role.OWNER:
        raise PermissionDenied(REQUIRES_OWNER, "Only owners can change or remove owners.")


def record_membership_event(
    action: str,
    membership: Membership,
    actor_user: Any,
    request: HttpRequest | None,
    details: dict[str, Any],
) -> None:
    """A membership's change in its organization's audit log (the API's and the admin's)."""
    record_event(
        action=action,
        organization_id=membership.organization_id,
        actor_user=actor_user,
        target_type="user",
        target_id=membership.user_id,
        target_label=membership.user.email,
        request=request,
        details=details,
    )


#: name -> what an app above does when a member is removed or their role changes (see
#: `on_membership_change`); apps/orgs cannot import them (imports run one way).
_membership_hooks: dict[str, Callable[..., None]] = {}


def on_membership_change(hook: Callable[..., None]) -> Callable[..., None]:
    """Register `hook(*, membership, role, actor_user, request, deactivated)`, run by
    `membership_changed`.

    For what an app above holds on a member's authority and must not outlive it
    (`apps.invitations`: the invitations they sent). `role` is their role from now
    on, None once they are no longer a member or their account was deactivated
    (`deactivated` true: the membership stays, but nobody can act with it).
    """
    _membership_hooks[f"{hook.__module__}.{hook.__qualname__}"] = hook
    return hook


def membership_changed(
    *,
    membership: Membership,
    role: str | None,
    actor_user: Any,
    request: HttpRequest | None = None,
    deactivated: bool = False,
) -> None:
    """Run the `on_membership_change` hooks; call it in the transaction that removes the
    member (`role` None), changes their role or deactivates their account (`role` None,
    `deactivated`), after its audit event, so what the hooks undo goes with the change or
    not at all."""
    for hook in _membership_hooks.values():
        hook(
            membership=membership,
            role=role,
            actor_user=actor_user,
            request=request,
            deactivated=deactivated,
        )


def _lock_for_change(
    actor_membership: Membership, target: Membership
) -> tuple[list[Membership], Membership, Membership]:
    """Inside a transaction: lock the owners, the actor and the target, and read them under
    the lock.

    Roles are checked on the locked rows, not on what the caller read earlier, so
    an actor demoted a moment ago cannot still demote or remove an owner. One statement,
    in id order: a change that locked the owners, then actor and target in a second
    statement, could hold the owners of before a promotion it waited for, lock the new
    owner after them, and deadlock with a change that had locked that one first (a race
    audit: a 503). An owner made while this waits is not among `owners`: the last-owner
    check is then only stricter.
    """
    rows = {
        m.pk: m
        for m in Membership.objects.select_for_update(of=("self",))  # not the users' rows
        .select_related("user")
        .filter(
            Q(organization_id=target.organization_id, role=Role.OWNER)
            | Q(pk__in=[actor_membership.pk, target.pk])
        )
        .order_by("id")
    }
    owners = [m for m in rows.values() if m.role == Role.OWNER]
    actor, current = rows.get(actor_membership.pk), rows.get(target.pk)
    if actor is None or actor.role not in MANAGER_ROLES or not account_active_now(actor.user_id):
        raise PermissionDenied(REQUIRES_ADMIN, "Only owners and admins can do this.")
    if current is None:
        raise NotFound()
    _guard_target(actor, current)
    return owners, actor, current


def add_member(
    *,
    actor_membership: Membership,
    email: Any,
    role: Any,
    request: HttpRequest | None = None,
) -> Membership:
    role = _clean_role(role)
    if not isinstance(email, str) or not email.strip():
        raise ValidationFailed({"email": ["An email address is required."]})
    if role == Role.OWNER and actor_membership.role != Role.OWNER:
        raise PermissionDenied(REQUIRES_OWNER, "Only owners can add owners.")
    # Emails are stored normalized: match the normalized spelling exactly.
    users = get_user_model().objects
    # A 404 tells whether an address has an account, which login, reset and invitations
    # never do: misses count against the adder and their client, so that this is no faster
    # a probe than a sign-up (found by an authentication audit: 200 probes a second, for
    # anyone who signed up once; counted before the lookup, a hit's count given back).
    ip = client_ip(request) if request is not None else None
    with (
        throttling.counting_failures(("member_add_miss_ip", ip)),
        throttling.counting_failures(("member_add_miss_user", str(actor_membership.user_id))),
    ):
        user = users.filter(email=users.normalize_email(email)).first()
        # SPEC §4.2: any account of that address, confirmed or not (the members page says
        # which: an unconfirmed one may be someone else's sign-up with a colleague's
        # address, which is why the dashboard invites rather than adds).
        if user is None:
            raise NotFound("No user with this email.")
    organization = actor_membership.organization
    try:
        with transaction.atomic():
            actor_role = manager_role_now(actor_membership.user, organization.id)
            if role == Role.OWNER and actor_role != Role.OWNER:
                raise PermissionDenied(REQUIRES_OWNER, "Only owners can add owners.")
            membership = Membership.objects.create(organization=organization, user=user, role=role)
            record_membership_event(
                Action.MEMBER_ADDED, membership, actor_membership.user, request, {"role": role}
            )
    except IntegrityError as exc:
        # only a concurrent add of the same member: any other broken constraint (a column
        # this release does not fill) is raised, not answered "already a member"
        if not users.filter(pk=user.pk).exists():
            # the account was deleted meanwhile: the foreign key's check at the commit
            # waited for the deletion's lock on its row, then found none
            raise NotFound("No user with this email.") from exc
        if not Membership.objects.filter(organization=organization, user=user).exists():
            raise
        raise ValidationFailed({"email": ["This user is already a member."]}) from exc
    return membership


def change_member_role(
    *,
    actor_membership: Membership,
    target: Membership,
    role: Any,
    request: HttpRequest | None = None,
) -> Membership:
    role = _clean_role(role)
    _guard_target(actor_membership, target)
    if role == Role.OWNER and actor_membership.role != Role.OWNER:
        raise PermissionDenied(REQUIRES_OWNER, "Only owners can make owners.")
    with transaction.atomic():
        owners, actor, target = _lock_for_change(actor_membership, target)
        if role == Role.OWNER and actor.role != Role.OWNER:
            raise PermissionDenied(REQUIRES_OWNER, "Only owners can make owners.")
        if target.role == role:
            return target
        if _leaves_no_active_owner(owners, target):
            raise _last_owner(owners)
        previous = target.role
        target.role = role
        target.save(update_fields=["role"])
        record_membership_event(
            Action.MEMBER_ROLE_CHANGED,
            target,
            actor_membership.user,
            request,
            {"from": previous, "to": role},
        )
        membership_changed(
            membership=target, role=role, actor_user=actor_membership.user, request=request
        )
    return target


def remove_member(
    *, actor_membership: Membership, target: Membership, request: HttpRequest | None = None
) -> None:
    _guard_target(actor_membership, target)
    with transaction.atomic():
        owners, _actor, target = _lock_for_change(actor_membership, target)
        if _leaves_no_active_owner(owners, target):
            raise _last_owner(owners)
        target.delete()
        record_membership_event(
            Action.MEMBER_REMOVED, target, actor_membership.user, request, {"role": target.role}
        )
        # Leaving (removing oneself) is a removal too.
        membership_changed(
            membership=target, role=None, actor_user=actor_membership.user, request=request
        )


def require_owner(membership: Membership) -> None:
    """Organization settings are the owners' (admins manage keys, projects and members)."""
    if membership.role != Role.OWNER:
        raise PermissionDenied(
            REQUIRES_OWNER, "Only owners can change the organization's settings."
        )


def set_key_lifetime_policy(
    *, actor_membership: Membership, days: Any, request: HttpRequest | None = None
) -> Organization:
    """Owners set `keyMaxLifetimeDays` (1 to 3650, or None for no policy; SPEC §4.10).

    From now on, secret and org keys minted or rolled in the organization must expire
    within that many days (`apps.apikeys.guardrails`); existing keys are not touched.
    Audited as `organization.updated` with the values before and after.
    """
    require_owner(actor_membership)
    if days is not None and (
        isinstance(days, bool)
        or not isinstance(days, int)
        or not MIN_KEY_LIFETIME_DAYS <= days <= MAX_KEY_LIFETIME_DAYS
    ):
        raise ValidationFailed(
            {
                "keyMaxLifetimeDays": [
                    f"A whole number of days from {MIN_KEY_LIFETIME_DAYS} to "
                    f"{MAX_KEY_LIFETIME_DAYS}, or null for no limit."
                ]
            }
        )
    with transaction.atomic():
        # NO KEY: a mint's lock still waits for this (and this for it); rows that merely
        # refer to the organization (another change's audit event) do not, or a demotion
        # holding the owners' rows would wait on us while we wait on it.
        organization = Organization.objects.select_for_update(no_key=True).get(
            pk=actor_membership.organization_id
        )
        # The role is read again under the lock: an owner demoted a moment ago cannot.
        if manager_role_now(actor_membership.user, organization.id) != Role.OWNER:
            raise PermissionDenied(
                REQUIRES_OWNER, "Only owners can change the organization's settings."
            )
        before = organization.key_max_lifetime_days
        if before != days:
            organization.key_max_lifetime_days = days
            organization.save(update_fields=["key_max_lifetime_days"])
            record_organization_updated(
                organization,
                "keyMaxLifetimeDays",
                (before, days),
                actor=actor_membership.user,
                request=request,
            )
    actor_membership.organization = organization
    return organization


def delete_organizations(organization_ids: Any) -> None:
    """Delete the organizations (ids, or a query of them) and everything they hold
    (projects, keys and their usage, webhooks and their events and deliveries, reminders,
    invitations, audit events), in the caller's transaction: a deleted key finds no row on
    its next request (401 KEY_INVALID), and no delivery or reminder of them is left to send.
    The admin's delete and an account's deletion (`apps.accounts.services.delete_account`).

    The organizations are locked first, in one order, as the admin's change page locks one
    (NO KEY: the DELETE itself takes the rest at the end, after the rows that refer to
    them). Then their keys and projects, for good (FOR UPDATE): a row inserted meanwhile
    that refers to one (the worker's usage copy, an analysis) waits for the delete and then
    fails its own foreign key. The delete removes the rows referring to a key first and the
    key last: one committed in between failed the delete, a 503 (an integrity audit).
    """
    ids = list(
        Organization.objects.select_for_update(no_key=True)
        .filter(pk__in=organization_ids)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if not ids:
        return
    for held in ("api_keys", "projects"):  # the rows the organization holds
        model = Organization._meta.get_field(held).related_model
        list(
            model.objects.select_for_update()
            .filter(organization_id__in=ids)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
    Organization.objects.filter(pk__in=ids).delete()
