"""What a restore to an earlier point undid, read back from the `sigsentry.audit` log lines,
and re-applied (`manage.py reapply_after_restore`).

The log is the copy of the audit events outside PostgreSQL (`apps.audit.services`): one
JSON object per line, as `core.logging.JsonFormatter` writes them. After a restore the keys
revoked since the backup authenticate again, a rolled key is back without its successor,
webhooks deleted since deliver again (a backup/restore audit). Re-applied here, through the
services that made the changes, each recorded as the system's with a reason: revocations,
the end of a roll's grace (a revocation: the successor is gone with the restore, so no
grace serves a move to it), deletions of webhooks. What needs a person is listed, not
changed: users whose security changes were undone, keys that are gone with the restore,
guardrails changed since. Safe to repeat: what is done already is left alone.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.db.models import QuerySet
from django.utils import timezone

from apps.accounts.models import User
from apps.apikeys.models import ApiKey, KeyStatus
from apps.apikeys.services import revoke_key
from apps.audit.services import Action, UserAction
from apps.orgs.models import Organization
from apps.webhooks.models import Webhook
from apps.webhooks.services import delete_webhook
from core.queries import filter_in_chunks

AUDIT_LOGGER = "sigsentry.audit"
#: The reasons the re-applied changes record (`revoked_reason` holds at most 32 characters).
REVOKED_AGAIN = "revoked_again_after_restore"
ROLL_ENDED = "rolled_before_restore"
DELETED_AGAIN = "deleted_again_after_restore"

REVOCATIONS = (Action.KEY_REVOKED, Action.KEY_REVOKED_BY_LEAK_REPORT)
NEW_KEYS = (Action.KEY_MINTED, Action.KEY_ROLLED)


def parse_moment(text: str) -> datetime:
    """An ISO 8601 moment; one without an offset is UTC. ValueError if it is none."""
    moment = datetime.fromisoformat(text.strip())
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def audit_lines(lines: Iterable[str]) -> Iterable[dict]:
    """The `sigsentry.audit` objects among `lines`; any other line is skipped (another
    logger's, a platform's prefix before the JSON is allowed: Heroku's, journald's)."""
    for text in lines:
        start = text.find("{")
        if start < 0:
            continue
        try:
            line = json.loads(text[start:])
        except ValueError:
            continue
        if isinstance(line, dict) and line.get("logger") == AUDIT_LOGGER and line.get("action"):
            yield line


def _moment_of(line: dict) -> datetime | None:
    try:
        return parse_moment(str(line.get("time")))
    except ValueError:
        return None


def _uuid(value: object) -> str | None:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None


@dataclass
class Undone:
    """What the log says happened since the backup, by id (prefixes as the lines name them)."""

    lines: int = 0
    revoked: dict[str, str] = field(default_factory=dict)
    rolled_away: dict[str, str] = field(default_factory=dict)
    webhooks_deleted: set[str] = field(default_factory=set)
    #: Keys minted or rolled since: key id → (organization id, prefix).
    new_keys: dict[str, tuple[str, str]] = field(default_factory=dict)
    keys_updated: dict[str, str] = field(default_factory=dict)
    users: dict[str, set[str]] = field(default_factory=dict)
    #: `key.rolled` lines written before they named the replaced key.
    rolls_unnamed: int = 0

    def add(self, line: dict) -> None:
        action, target = line["action"], _uuid(line.get("target_id"))
        prefix = str(line.get("key_prefix") or "")
        self.lines += 1
        if action in REVOCATIONS and target:
            self.revoked[target] = prefix
        if action == Action.KEY_ROLLED:
            replaced = _uuid(line.get("replaced_key_id"))
            if replaced:
                self.rolled_away[replaced] = str(line.get("replaced_key_prefix") or "")
            else:
                self.rolls_unnamed += 1
        organization = _uuid(line.get("organization_id"))
        if action in NEW_KEYS and target and organization:
            self.new_keys[target] = (organization, prefix)
        if action == Action.KEY_UPDATED and target:
            self.keys_updated[target] = prefix
        if action == Action.WEBHOOK_DELETED and target:
            self.webhooks_deleted.add(target)
        user = _uuid(line.get("user_id"))
        if action in UserAction.ALL and user:
            self.users.setdefault(user, set()).add(action)


def read_undone(lines: Iterable[str], since: datetime) -> tuple[int, Undone]:
    """(audit lines read, what those from `since` on record)."""
    read, undone = 0, Undone()
    for line in audit_lines(lines):
        read += 1
        moment = _moment_of(line)
        if moment is not None and moment >= since:
            undone.add(line)
    return read, undone


@dataclass(frozen=True)
class Step:
    """One change to re-apply, said as done (`done`) or to be done (`planned`)."""

    planned: str
    done: str
    run: Callable[[], object]  # the change, through its service


def steps(undone: Undone) -> list[Step]:
    """The changes the database lacks, in order: deletions of webhooks first (the
    revocations' events would go to them), then revocations, then ended graces."""
    found = [
        Step(
            f"Would delete webhook {webhook.pk} ({webhook.url_host}) again",
            f"Deleted webhook {webhook.pk} ({webhook.url_host}) again",
            lambda webhook=webhook: delete_webhook(
                actor=None, webhook=webhook, reason=DELETED_AGAIN
            ),
        )
        for webhook in _existing(Webhook.objects.all(), undone.webhooks_deleted, "pk")
    ]
    unrevoked = ApiKey.objects.filter(revoked_at__isnull=True)
    revoked = set()
    for api_key in _existing(unrevoked, undone.revoked, "prefix"):
        revoked.add(api_key.pk)
        found.append(_revocation(api_key, REVOKED_AGAIN))
    now = timezone.now()
    for api_key in _existing(unrevoked, undone.rolled_away, "prefix"):
        # one expired since (its own expiry or the grace's end) is over already
        if api_key.pk not in revoked and api_key.status_at(now) == KeyStatus.ACTIVE:
            found.append(_revocation(api_key, ROLL_ENDED))
    return found


def _existing(queryset: QuerySet, ids: Iterable[str], order: str) -> list:
    """The rows of `queryset` among `ids` (in chunks: a day of leak reports can name
    thousands of keys), in the order of their `order` field."""
    rows = filter_in_chunks(queryset, "pk", ids)
    return sorted(rows, key=lambda row: str(getattr(row, order)))


def _revocation(api_key: ApiKey, reason: str) -> Step:
    name = f"{api_key.prefix}… ({api_key.pk})"
    what = "revoke key" if reason == REVOKED_AGAIN else "end the grace of rolled key"
    done = "Revoked key" if reason == REVOKED_AGAIN else "Ended the grace of rolled key"
    return Step(
        f"Would {what} {name}",
        f"{done} {name} (revoked: {reason})",
        lambda: revoke_key(actor=None, api_key=api_key, reason=reason),
    )


def for_the_operator(undone: Undone) -> list[str]:
    """What a person must look at, one line each: changed by nothing here."""
    lines = []
    for user in _existing(User.objects.all(), undone.users, "email"):
        actions = ", ".join(sorted(undone.users[str(user.pk)]))
        lines.append(f"User {user.email} ({user.pk}): undone {actions}")
    existing = {str(key.pk) for key in _existing(ApiKey.objects.only("pk"), undone.new_keys, "pk")}
    gone = {
        key: org_and_prefix
        for key, org_and_prefix in undone.new_keys.items()
        if key not in existing and key not in undone.revoked
    }
    organizations = Organization.objects.only("pk", "name")
    names = {
        str(org.pk): org.name
        for org in _existing(organizations, {org for org, _ in gone.values()}, "pk")
    }
    by_org: dict[str, list[str]] = {}
    for org, prefix in gone.values():
        by_org.setdefault(org, []).append(f"{prefix}…")
    for org, prefixes in sorted(by_org.items()):
        name = names.get(org, "(gone too)")
        lines.append(
            f"Organization {name} ({org}): keys minted or rolled since are gone, "
            f"mint or roll again: {', '.join(sorted(prefixes))}"
        )
    for api_key in _existing(ApiKey.objects.all(), undone.keys_updated, "prefix"):
        lines.append(
            f"Key {api_key.prefix}… ({api_key.pk}) of organization {api_key.organization_id}: "
            "name or guardrails changed since are undone, ask its organization"
        )
    if undone.rolls_unnamed:
        lines.append(
            f"{undone.rolls_unnamed} key.rolled line(s) do not name the key they replaced "
            "(written by an older release): find those keys by their successors' lines"
        )
    return lines
