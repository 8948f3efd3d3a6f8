"""Composing and sending reminder emails: plain text and HTML, never a key.

A message names keys by name, display prefix and project, says what happens
next and links to the page that fixes it (`SITE_URL`). Recipients are the
organization's owners and admins plus the keys' creators who are still members;
each gets their own message.
"""

from __future__ import annotations

import logging
import smtplib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from django.conf import settings
from django.core.mail import get_connection
from django.db.models import Q
from django.template.loader import render_to_string
from django.utils import timezone

from apps.apikeys.models import ApiKey, KeyScope, KeyType, active_at
from apps.notifications.models import Reminder, ReminderKind
from apps.orgs.models import Membership, Organization
from core import mail, mailserver, metrics
from core.mail import name_in_text
from core.permissions import MANAGER_ROLES

logger = logging.getLogger("sigsentry.notifications")

#: Keys named in one message; the rest are counted ("…and 475 more"): the first run after
#: an upgrade may find hundreds of idle keys in one organization.
KEYS_LISTED = 25
ORGANIZATION_KEY = "All projects (organization key)"

#: Email failures in this process, by reason; `count_email_failure` is the one writer.
email_failures: Counter[str] = Counter()


def count_email_failure(reason: str) -> None:
    """In this process by reason, and in the database for /metrics (the worker sends)."""
    email_failures[reason] += 1
    metrics.record_email_failure()


@dataclass(frozen=True)
class Copy:
    subject: str  # {count} keys, {org}
    intro: str
    next_steps: str
    action: str


COPY: dict[str, Copy] = {
    ReminderKind.KEY_EXPIRING_7D: Copy(
        "{what} of {org} expire{s} within 7 days",
        "These API keys expire within 7 days. Requests made with them will then fail "
        "with 401 KEY_EXPIRED.",
        "Roll each key that is still in use (the new key works at once and the old one keeps "
        "working for the grace period you choose), then update where it is deployed.",
        "Open the key page",
    ),
    ReminderKind.KEY_EXPIRING_1D: Copy(
        "{what} of {org} expire{s} within 24 hours",
        "These API keys expire within 24 hours. Requests made with them will then fail "
        "with 401 KEY_EXPIRED.",
        "Roll each key that is still in use now and deploy the new key. A key already "
        "rolled (its grace period ends) cannot be rolled again: deploy its successor.",
        "Roll the key",
    ),
    ReminderKind.KEY_UNUSED: Copy(
        "{what} of {org} unused for 90 days",
        "These API keys have not been used for 90 days (or never, since they were created).",
        "An unused key is risk without benefit: revoke it if nothing needs it. If it is kept "
        "on purpose, nothing else happens and you will not be told again until it is used "
        "and then falls idle again.",
        "Review the keys",
    ),
    ReminderKind.KEY_REVOKED_BY_LEAK_REPORT: Copy(
        "{what} of {org} revoked after a leak report",
        "These secret keys were found in public (reported to SigSentry's leaked-key "
        "endpoint or by GitHub secret scanning) and were revoked at once. Requests made "
        "with them now fail with 401 KEY_REVOKED.",
        "Mint replacement keys, deploy them, and remove the leaked keys from where they "
        "were published (and from its history). The audit log shows where each was found.",
        "Mint a replacement",
    ),
    ReminderKind.KEY_LEAK_REPORTED: Copy(
        "{what} of {org} reported as leaked",
        "These SDK keys were reported as leaked. SDK keys are public by design (they are "
        "served in web pages), so they were not revoked and keep working.",
        "If a key turns up somewhere it should not be used, restrict it to your sites with "
        "allowed origins, or roll it. The audit log shows where it was reported.",
        "Review the SDK keys",
    ),
    ReminderKind.LEGACY_SUNSET_30D: Copy(
        "Legacy API keys of {org} stop working on {sunset_day}",
        "Your organization still has active legacy keys (tb_ or ss_live_). They stop "
        "working on {sunset}, with 401 KEY_FORMAT_DEPRECATED.",
        "Replace each legacy key with a new key (one click on the API Keys page keeps its "
        "project, name and permissions) and deploy it before the sunset.",
        "Replace legacy keys",
    ),
    ReminderKind.LEGACY_SUNSET_7D: Copy(
        "Reminder: legacy API keys of {org} stop working on {sunset_day}",
        "Your organization still has active legacy keys (tb_ or ss_live_). They stop "
        "working on {sunset}, with 401 KEY_FORMAT_DEPRECATED.",
        "Replace each legacy key with a new key now and deploy it before the sunset.",
        "Replace legacy keys",
    ),
    ReminderKind.WEBHOOK_DISABLED: Copy(
        "A webhook of {org} was disabled",
        "A webhook endpoint failed 100 events in a row (each retried for 24 hours), so "
        "SigSentry stopped sending to it.",
        "Fix the endpoint, then re-enable the webhook with one click on the Webhooks page. "
        "Events from while it was disabled are not sent.",
        "Open webhooks",
    ),
}


def key_page_url(api_key: ApiKey) -> str:
    if api_key.scope == KeyScope.ORGANIZATION:
        return f"{settings.SITE_URL}/orgs/{api_key.organization_id}/api-keys/"
    segment = "sdk-keys" if api_key.type == KeyType.PUBLIC else "api-keys"
    return f"{settings.SITE_URL}/projects/{api_key.project_id}/{segment}/"


def recipients(organization_id: Any, creator_ids: set[Any]) -> list[str]:
    """Owners and admins, and the keys' creators if they still belong to the organization."""
    return sorted(
        set(
            Membership.objects.filter(organization_id=organization_id, user__is_active=True)
            .filter(Q(role__in=MANAGER_ROLES) | Q(user_id__in=creator_ids))
            .values_list("user__email", flat=True)
        )
    )


def compose(kind: str, organization: Organization, reminders: list[Reminder]) -> dict[str, Any]:
    """Subject and template context for one organization's reminders of one kind."""
    copy = COPY[kind]
    keys = [r.api_key for r in reminders if r.api_key is not None]
    if kind in (ReminderKind.LEGACY_SUNSET_30D, ReminderKind.LEGACY_SUNSET_7D):
        keys = _legacy_keys_of(organization)  # one notice for the organization: its keys now
    webhooks = [r.webhook for r in reminders if r.webhook is not None]
    # The day, not "in 30 days": a notice is sent any time in its window (an organization
    # that imports legacy keys 12 days before), and read later still (a dates audit).
    sunset_at = settings.LEGACY_KEYS_SUNSET_AT.astimezone(UTC)
    sunset = sunset_at.strftime("%-d %B %Y, %H:%M UTC")
    noun = "SDK key" if kind == ReminderKind.KEY_LEAK_REPORTED else "API key"
    what = f"{len(keys)} {noun}s" if len(keys) != 1 else f"An {noun}"
    subject = copy.subject.format(
        what=what,
        s="" if len(keys) != 1 else "s",
        org=name_in_text(organization.name),  # isolated as the HTML part's <bdi>
        sunset_day=sunset_at.strftime("%-d %B %Y"),
    )
    subject = " ".join(subject.split())  # one line, whatever the organization's name holds
    rows = sorted(
        (
            {
                "name": key.name,
                "prefix": key.prefix,
                "project": key.project.name if key.project_id else ORGANIZATION_KEY,
                "expires_at": key.expires_at,
                "last_used_at": key.last_used_at,
                "url": key_page_url(key),
            }
            for key in keys
        ),
        key=lambda row: (row["project"] != ORGANIZATION_KEY, row["project"], row["name"]),
    )
    if kind in (ReminderKind.LEGACY_SUNSET_30D, ReminderKind.LEGACY_SUNSET_7D):
        action_url = f"{settings.SITE_URL}/orgs/{organization.id}/api-keys/"
    elif kind == ReminderKind.WEBHOOK_DISABLED:
        action_url = f"{settings.SITE_URL}/orgs/{organization.id}/webhooks/"
    else:  # the page of the first key listed
        action_url = rows[0]["url"] if rows else settings.SITE_URL + "/"
    return {
        "subject": subject,
        "organization": organization,
        "intro": copy.intro.format(sunset=sunset),
        "next_steps": copy.next_steps,
        "action": copy.action,
        "action_url": action_url,
        "keys": rows[:KEYS_LISTED],
        "more": _counted(rows[KEYS_LISTED:]),
        "webhooks": [{"host": w.url_host, "created_at": w.created_at} for w in webhooks],
        "site_url": settings.SITE_URL,
    }


def _legacy_keys_of(organization: Organization) -> list[ApiKey]:
    """The organization's legacy keys that still work: the ones to replace."""
    return list(
        ApiKey.objects.filter(
            active_at(timezone.now()), organization=organization, legacy=True
        ).select_related("project")
    )


def _counted(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The keys not named, counted by the page that lists them (a project's SDK or API
    keys, the organization's keys), most first."""
    pages = Counter((row["project"], row["url"]) for row in rows)
    return [
        {"project": project, "url": url, "count": count}
        for (project, url), count in sorted(pages.items(), key=lambda item: (-item[1], item[0]))
    ]


@dataclass
class Sent:
    """What became of a message's copies: `accepted` the addresses the mail server took,
    `refused` those it refused for good (a 5xx to RCPT: never mailable, and waiting for
    them would hold everyone else's copy); `failure` the first thing that stopped a copy
    (a temporary refusal, the server down or slow), those copies to be tried again."""

    accepted: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    failure: Exception | None = None

    @property
    def done(self) -> list[str]:
        return self.accepted + self.refused

    @property
    def server_failed(self) -> bool:
        """Whether the server itself failed (unreachable, silent, hung up), not one copy."""
        return mailserver.is_server_failure(self.failure)


def send_reminder_email(
    kind: str, organization: Organization, reminders: list[Reminder], to: list[str]
) -> Sent:
    """Send one message per recipient over one connection, each on its own: an address
    refused (for good or for now) never costs the others their copy; a server that fails
    stops the rest."""
    sent = Sent()
    try:
        mailserver.check()
        context = compose(kind, organization, reminders)
        text = render_to_string("notifications/email.txt", context)
        html = render_to_string("notifications/email.html", context)
        with get_connection(fail_silently=False) as connection:
            for address in to:
                message = mail.compose(to=address, subject=context["subject"], text=text, html=html)
                try:
                    mail.send(message, connection)  # a copy for another mailbox: refused
                except smtplib.SMTPRecipientsRefused as exc:
                    if not mailserver.refused_for_good(exc):
                        sent.failure = sent.failure or exc  # for now: this copy tried again
                        continue
                    count_email_failure(type(exc).__name__)
                    logger.warning(
                        "reminder email refused for one recipient for good",
                        extra={"organization_id": str(organization.id)},
                    )
                    sent.refused.append(address)
                except smtplib.SMTPResponseException as exc:
                    if mailserver.is_server_failure(exc):
                        raise
                    sent.failure = sent.failure or exc  # this message refused: tried again
                else:
                    sent.accepted.append(address)
    except Exception as exc:  # the server, or composing the message: the rest tried again
        mailserver.note(exc)
        sent.failure = exc
    return sent
