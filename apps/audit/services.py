"""Writing audit events: the only code that creates an AuditEvent."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ParamSpec

from django.db import transaction
from django.http import HttpRequest

from apps.audit.models import AuditEvent
from core.net import client_ip, user_agent

audit_log = logging.getLogger("sigsentry.audit")
P = ParamSpec("P")


class Action:
    KEY_MINTED = "key.minted"
    KEY_REVOKED = "key.revoked"
    KEY_ROLLED = "key.rolled"
    KEY_REVOKED_BY_LEAK_REPORT = "key.revoked_by_leak_report"
    KEY_LEAK_REPORTED = "key.leak_reported"
    KEY_UPDATED = "key.updated"
    #: Written before `key.updated` covered origin changes; kept so old events still filter.
    KEY_ORIGINS_CHANGED = "key.allowed_origins_changed"
    LEGACY_KEYS_IMPORTED = "legacy_keys.imported"
    MEMBER_ADDED = "member.added"
    MEMBER_INVITED = "member.invited"
    MEMBER_INVITATION_CANCELLED = "member.invitation_cancelled"
    MEMBER_ROLE_CHANGED = "member.role_changed"
    MEMBER_REMOVED = "member.removed"
    #: An operator's change to a member's account (the admin), in each of its organizations.
    MEMBER_DEACTIVATED = "member.deactivated"
    MEMBER_REACTIVATED = "member.reactivated"
    MEMBER_TWO_FACTOR_RESET = "member.two_factor_reset"
    MEMBER_SESSIONS_ENDED = "member.sessions_ended"
    MEMBER_PASSWORD_SET = "member.password_set"
    MEMBER_EMAIL_CHANGED = "member.email_changed"
    PROJECT_CREATED = "project.created"
    PROJECT_UPDATED = "project.updated"
    PROJECT_DELETED = "project.deleted"
    ORGANIZATION_CREATED = "organization.created"
    WEBHOOK_CREATED = "webhook.created"
    WEBHOOK_DELETED = "webhook.deleted"
    WEBHOOK_DISABLED = "webhook.disabled"
    WEBHOOK_ENABLED = "webhook.enabled"
    ORGANIZATION_UPDATED = "organization.updated"
    #: The log itself downloaded as a file (CSV or JSON Lines) from the dashboard.
    AUDIT_LOG_EXPORTED = "audit_log.exported"

    ALL = (
        KEY_MINTED,
        KEY_REVOKED,
        KEY_ROLLED,
        KEY_REVOKED_BY_LEAK_REPORT,
        KEY_LEAK_REPORTED,
        KEY_UPDATED,
        KEY_ORIGINS_CHANGED,
        LEGACY_KEYS_IMPORTED,
        MEMBER_ADDED,
        MEMBER_INVITED,
        MEMBER_INVITATION_CANCELLED,
        MEMBER_ROLE_CHANGED,
        MEMBER_REMOVED,
        MEMBER_DEACTIVATED,
        MEMBER_REACTIVATED,
        MEMBER_TWO_FACTOR_RESET,
        MEMBER_SESSIONS_ENDED,
        MEMBER_PASSWORD_SET,
        MEMBER_EMAIL_CHANGED,
        PROJECT_CREATED,
        PROJECT_UPDATED,
        PROJECT_DELETED,
        ORGANIZATION_CREATED,
        WEBHOOK_CREATED,
        WEBHOOK_DELETED,
        WEBHOOK_DISABLED,
        WEBHOOK_ENABLED,
        ORGANIZATION_UPDATED,
        AUDIT_LOG_EXPORTED,
    )


class UserAction:
    """A user's own security changes: no organization's event (an account belongs to any
    number of organizations, or to none), one `sigsentry.audit` line each
    (`log_user_change`), so that after a restore to an earlier point the operator can list
    the users whose change it undid (a backup/restore audit: a password changed or
    two-factor turned on since the backup was undone without a trace)."""

    PASSWORD_CHANGED = "user.password_changed"
    PASSWORD_RESET = "user.password_reset"
    #: By an operator (the admin); the user's organizations record `member.password_set`.
    PASSWORD_SET = "user.password_set"
    TWO_FACTOR_ENABLED = "user.two_factor_enabled"
    TWO_FACTOR_DISABLED = "user.two_factor_disabled"
    #: By an operator (the admin); the user's organizations record `member.two_factor_reset`.
    TWO_FACTOR_RESET = "user.two_factor_reset"
    RECOVERY_CODE_USED = "user.recovery_code_used"
    #: "Log out everywhere else", or an operator's ending of sessions (the admin).
    SESSIONS_ENDED = "user.sessions_ended"
    #: By an operator (the admin), as their organizations' `member.deactivated`,
    #: `member.reactivated` and `member.email_changed`; an account in no organization (an
    #: operator's) has only this line (an admin audit: a restore brought a deactivated
    #: account back, and nothing told the operator).
    DEACTIVATED = "user.deactivated"
    REACTIVATED = "user.reactivated"
    EMAIL_CHANGED = "user.email_changed"
    #: Staff or superuser status, groups or permissions given or taken (a superuser, in the
    #: admin).
    RIGHTS_CHANGED = "user.rights_changed"
    #: The user deleted their own account (the account page).
    ACCOUNT_DELETED = "user.account_deleted"

    ALL = (
        PASSWORD_CHANGED,
        PASSWORD_RESET,
        PASSWORD_SET,
        TWO_FACTOR_ENABLED,
        TWO_FACTOR_DISABLED,
        TWO_FACTOR_RESET,
        RECOVERY_CODE_USED,
        SESSIONS_ENDED,
        DEACTIVATED,
        REACTIVATED,
        EMAIL_CHANGED,
        RIGHTS_CHANGED,
        ACCOUNT_DELETED,
    )


def log_user_change(action: str, user_id: Any) -> None:
    """One `sigsentry.audit` line for a `UserAction` on the account `user_id`, once the
    caller's transaction commits (none for a change rolled back; at once outside one). The
    action and the user's id only: no address, password, code or email text."""
    line = {"action": action, "user_id": str(user_id)}
    transaction.on_commit(lambda: audit_log.info("audit %s", action, extra=line))


def forget_account(user_id: Any) -> int:
    """The one change an event ever gets: before an account is deleted (in its
    transaction), the events of its organizations keep what happened and when, and drop
    whom it identified. Its address goes from the events it acted in (`actor_label`; the
    link `actor_user` goes with the row, SET_NULL) and from those about it as a member
    (`target_label`, and the old and new addresses of `member.email_changed`); `target_id`
    stays, a bare id that no row names any more, so the events of one former member still
    read as one person's. Addresses an organization typed itself (an invitation's) are the
    organization's and stay. How many events changed."""
    acted = AuditEvent.objects.filter(actor_user_id=user_id).exclude(actor_label="")
    changed = acted.update(actor_label="")
    about = AuditEvent.objects.filter(target_type="user", target_id=str(user_id))
    changed += about.filter(action=Action.MEMBER_EMAIL_CHANGED).update(target_label="", details={})
    changed += about.exclude(target_label="").update(target_label="")
    return changed


def audit_event(
    *,
    action: str,
    organization_id: Any,
    actor_user: Any = None,
    actor_key: Any = None,
    actor_type: str | None = None,
    project_id: Any = None,
    target_type: str = "",
    target_id: Any = "",
    target_label: str = "",
    request: HttpRequest | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """One event, not yet stored (`record_event` stores one, `record_events` many at once).
    Never holds a secret: labels are emails and key prefixes."""
    if actor_type is None:
        if actor_key is not None:
            actor_type = AuditEvent.ActorType.KEY
        elif actor_user is not None:
            actor_type = AuditEvent.ActorType.USER
        else:
            actor_type = AuditEvent.ActorType.SYSTEM
    actor_label = ""
    if actor_key is not None:
        actor_label = actor_key.prefix
    elif actor_user is not None:
        actor_label = actor_user.email
    return AuditEvent(
        action=action,
        organization_id=organization_id,
        project_id=project_id,
        actor_type=actor_type,
        actor_user=actor_user,
        actor_key=actor_key,
        actor_label=actor_label,
        target_type=target_type,
        target_id=str(target_id or ""),
        target_label=target_label,
        ip=client_ip(request) if request is not None else None,
        user_agent=user_agent(request) if request is not None else "",
        through_admin=_through_admin(request),
        details=details or {},
    )


def _through_admin(request: HttpRequest | None) -> bool:
    """Whether the request is the Django admin's (every AdminSite's URLs have the app_name
    "admin"); not for no request, nor one not yet routed."""
    match = getattr(request, "resolver_match", None)
    return match is not None and match.app_name == "admin"


def _appended(build: Callable[P, AuditEvent]) -> Callable[P, AuditEvent]:
    """`build`, its event stored: `record_event` takes `audit_event`'s typed keywords
    without a second copy of them."""

    def append(*args: P.args, **fields: P.kwargs) -> AuditEvent:
        event = build(*args, **fields)
        event.save(force_insert=True)
        log_when_committed([event])
        return event

    return append


#: Append one event (`audit_event`'s fields).
record_event = _appended(audit_event)


def record_events(events: list[AuditEvent]) -> list[AuditEvent]:
    """Append many events in one statement (a large tenant's demotion cancelled 1,900
    invitations with 1,900 INSERTs, 1.8 s in one locking transaction)."""
    stored = AuditEvent.objects.bulk_create(events)
    log_when_committed(stored)
    return stored


def log_when_committed(events: list[AuditEvent]) -> None:
    """One `sigsentry.audit` log line per event, once its transaction commits (none for a
    change rolled back): a copy of the log outside the database, shipped with the others.
    After a restore to an earlier point it says what to revoke again (found by a restore
    drill: nothing outside PostgreSQL named the keys revoked since the backup). Ids, the
    action and a key's prefix only: no name, address or detail but the key a roll or
    replacement succeeds (`_replaced_key`)."""
    lines = [
        {
            "event_id": str(event.id),
            "action": event.action,
            "organization_id": str(event.organization_id),
            "project_id": str(event.project_id) if event.project_id else None,
            "actor_type": event.actor_type,
            "actor_id": str(event.actor_user_id or event.actor_key_id or "") or None,
            "target_type": event.target_type,
            "target_id": event.target_id,
            "key_prefix": event.target_label if event.target_type == "key" else None,
        }
        | _replaced_key(event)
        for event in events
    ]
    transaction.on_commit(
        lambda: [audit_log.info("audit %s", line["action"], extra=line) for line in lines]
    )


def _replaced_key(event: AuditEvent) -> dict[str, Any]:
    """The id and prefix of the key `event`'s key succeeds (a roll's predecessor, a replaced
    legacy key): a restore that drops the successor brings it back, and a restore audit
    found it only in the stored event, which the restore drops too."""
    details = event.details if isinstance(event.details, dict) else {}
    if event.target_type != "key" or not details.get("replaces"):
        return {}
    return {
        "replaced_key_id": str(details["replaces"]),
        "replaced_key_prefix": details.get("replacesPrefix"),
    }
