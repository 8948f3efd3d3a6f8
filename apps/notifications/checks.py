"""The scheduled notification checks (SPEC §4.11), safe to run any number of times.

Each check finds what is due and writes a `Reminder` per finding; its unique
`dedupe_key` makes the second writer fail, so a reminder — its email and its
`key.expiring` / `key.unused` webhook event, written in the same transaction —
happens once however many workers or `send_notifications` runs find it.
`send_pending_emails` then mails every reminder not yet accepted by the mail
server, one message per organization, kind and recipient.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import (
    Case,
    CharField,
    DateTimeField,
    Exists,
    ExpressionWrapper,
    F,
    Func,
    OuterRef,
    Q,
    Value,
    When,
)
from django.db.models.functions import Coalesce, Concat
from django.utils import timezone

from apps.apikeys.models import ApiKey, active_at
from apps.apikeys.services import key_event
from apps.notifications import mail
from apps.notifications.models import Reminder, ReminderKind
from apps.orgs.models import Organization
from apps.webhooks.models import Event, EventType, Webhook
from apps.webhooks.services import record_key_events
from core import metrics
from core.queries import ROWS_PER_STATEMENT

logger = logging.getLogger("sigsentry.notifications")

UNUSED_AFTER = timedelta(days=90)
LEAK_EVENTS_WITHIN = timedelta(days=2)
DISABLED_WEBHOOKS_WITHIN = timedelta(days=7)
EMAIL_LEASE = timedelta(minutes=5)
EMAIL_GIVE_UP_AFTER = timedelta(days=3)
#: Messages claimed per run (one per organization and kind), and reminders per message.
EMAIL_GROUPS = 50
EMAIL_PER_MESSAGE = 5000
#: Findings claimed per query of the reminders already written.
CLAIM_BATCH = 1000


@dataclass
class Found:
    """A due reminder, before it is claimed."""

    kind: str
    dedupe_key: str
    organization_id: object
    api_key: ApiKey | None = None
    webhook: Webhook | None = None
    event_type: str | None = None  # a webhook event to record with the reminder


@dataclass
class Report:
    created: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    emails_sent: int = 0
    email_failures: int = 0

    def __str__(self) -> str:
        made = ", ".join(f"{kind}: {n}" for kind, n in sorted(self.created.items())) or "none"
        return (
            f"reminders created: {made}; emails sent: {self.emails_sent}; "
            f"email failures: {self.email_failures}"
        )


def _stamp(moment: datetime | None) -> str:
    return str(int(moment.timestamp())) if moment else "never"


def _active_keys(now: datetime):
    return ApiKey.objects.filter(active_at(now))


def _told(kind: str, since) -> Exists:
    """Whether the key has a `kind` reminder written at or after `since`, an expression
    over the key's own fields: the moment its current notice of that kind fell due."""
    return Exists(
        Reminder.objects.filter(
            api_key=OuterRef("pk"),
            kind=kind,
            created_at__gte=ExpressionWrapper(since, output_field=DateTimeField()),
        )
    )


def expiring_keys(now: datetime) -> Iterable[Found]:
    """Active keys expiring within 7 days: the 7-day notice, then the 1-day notice.

    A key already inside its last day gets only the 1-day notice. A rolled key (whose
    successor exists) expires at the end of the grace period chosen, so it gets no 7-day
    notice, and the 1-day notice only if it was used after the roll: something still
    depends on it and stops working tomorrow (as Stripe warns of a rolled key in use).
    """
    # Told already: a notice written since it fell due, 7 days or 1 day before the expiry
    # (an expiry moves only by a roll, which ends the notices, or by an operator).
    week_due = OuterRef("expires_at") - timedelta(days=7)
    day_due = OuterRef("expires_at") - timedelta(days=1)
    last_day_from = now + timedelta(days=1)
    keys = (
        _active_keys(now)
        .filter(
            Q(replaced_by__isnull=True)
            | Q(last_used_at__gt=F("replaced_by__created_at"), expires_at__lte=last_day_from),
            expires_at__lte=now + timedelta(days=7),
        )
        .exclude(Q(expires_at__gt=last_day_from) & _told(ReminderKind.KEY_EXPIRING_7D, week_due))
        .exclude(Q(expires_at__lte=last_day_from) & _told(ReminderKind.KEY_EXPIRING_1D, day_due))
    )
    for key in keys.select_related("project", "organization", "created_by").iterator(CLAIM_BATCH):
        last_day = key.expires_at <= last_day_from
        kind = ReminderKind.KEY_EXPIRING_1D if last_day else ReminderKind.KEY_EXPIRING_7D
        yield Found(
            kind,
            f"{kind}:{key.id}:{_stamp(key.expires_at)}",
            key.organization_id,
            api_key=key,
            event_type=EventType.KEY_EXPIRING,
        )


def unused_keys(now: datetime) -> Iterable[Found]:
    """Active keys unused for 90 days (or never used in 90 days); once per idle spell."""
    cutoff = now - UNUSED_AFTER
    # Told already in this idle spell: a notice written at least 90 days after the last
    # use (or the creation, if never used), which is when this spell's notice is due.
    spell_due = Coalesce(OuterRef("last_used_at"), OuterRef("created_at")) + UNUSED_AFTER
    keys = (
        _active_keys(now)
        .filter(Q(last_used_at__lte=cutoff) | Q(last_used_at__isnull=True, created_at__lte=cutoff))
        .exclude(_told(ReminderKind.KEY_UNUSED, spell_due))
    )
    for key in keys.select_related("project", "organization", "created_by").iterator(CLAIM_BATCH):
        kind = ReminderKind.KEY_UNUSED
        yield Found(
            kind,
            f"{kind}:{key.id}:{_stamp(key.last_used_at)}",
            key.organization_id,
            api_key=key,
            event_type=EventType.KEY_UNUSED,
        )


def legacy_sunset(now: datetime) -> Iterable[Found]:
    """Organizations with active legacy keys, 30 and 7 days before the sunset; once each."""
    sunset = settings.LEGACY_KEYS_SUNSET_AT
    if now >= sunset or now < sunset - timedelta(days=30):
        return
    last_week = now >= sunset - timedelta(days=7)
    kind = ReminderKind.LEGACY_SUNSET_7D if last_week else ReminderKind.LEGACY_SUNSET_30D
    org_ids = (
        _active_keys(now).filter(legacy=True).values_list("organization_id", flat=True).distinct()
    )
    for org_id in org_ids:
        yield Found(kind, f"{kind}:{org_id}:{_stamp(sunset)}", org_id)


class _UuidText(Func):
    """A UUID column as `str(uuid)` spells it: PostgreSQL's text form; SQLite stores 32 hex
    digits, given the dashes here."""

    output_field = CharField()

    # Params as a tuple, as Django's own expressions give them (a list is refused from 6.0).
    def as_postgresql(self, compiler, connection, **extra_context):
        sql, params = compiler.compile(self.source_expressions[0])
        return f"({sql})::text", tuple(params)

    def as_sqlite(self, compiler, connection, **extra_context):
        sql, params = compiler.compile(self.source_expressions[0])
        parts = ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))
        text = " || '-' || ".join(f"substr({sql}, {start}, {length})" for start, length in parts)
        return f"({text})", tuple(params) * len(parts)


def leak_reports(now: datetime) -> Iterable[Found]:
    """Keys revoked or SDK keys flagged by a leak report (the outbox holds each report)."""
    kinds = {
        EventType.KEY_REVOKED_BY_LEAK_REPORT: ReminderKind.KEY_REVOKED_BY_LEAK_REPORT,
        EventType.KEY_LEAK_REPORTED: ReminderKind.KEY_LEAK_REPORTED,
    }
    # The reminder an event makes, by its dedupe key: only the events without one are read,
    # so the run every 15 s reads nothing once each has its reminder (it read every leak
    # event of two days, and their keys: 20,000 events, 2 s and 25 queries a run).
    dedupe_key = Concat(
        Case(*(When(type=event, then=Value(f"{kind}:")) for event, kind in kinds.items())),
        _UuidText("id"),
        output_field=CharField(),
    )
    events = list(
        Event.objects.filter(type__in=kinds, created_at__gte=now - LEAK_EVENTS_WITHIN)
        .annotate(dedupe_key=dedupe_key)
        .exclude(Exists(Reminder.objects.filter(dedupe_key=OuterRef("dedupe_key"))))
        .values_list("id", "type", "organization_id", "data")
    )
    keys = ApiKey.objects.select_related("project", "organization", "created_by").in_bulk(
        {data["key"]["id"] for _id, _type, _org, data in events}
    )
    for event_id, event_type, org_id, data in events:
        key = keys.get(uuid.UUID(str(data["key"]["id"])))
        if key is not None:
            kind = kinds[event_type]
            yield Found(kind, f"{kind}:{event_id}", org_id, api_key=key)


def disabled_webhooks(now: datetime) -> Iterable[Found]:
    for webhook in Webhook.objects.filter(
        disabled_at__isnull=False, disabled_at__gte=now - DISABLED_WEBHOOKS_WITHIN
    ):
        kind = ReminderKind.WEBHOOK_DISABLED
        yield Found(
            kind,
            f"{kind}:{webhook.id}:{_stamp(webhook.disabled_at)}",
            webhook.organization_id,
            webhook=webhook,
        )


def claim(found: Iterable[Found], now: datetime, report: Report) -> None:
    """Write each reminder not written yet, with its webhook event, CLAIM_BATCH findings
    at a time: the findings are read that many at a time too, and each batch's `IN` list
    stays far below PostgreSQL's 65,535 bound parameters, however many keys are due."""
    found = iter(found)
    while batch := list(islice(found, CLAIM_BATCH)):
        _claim_batch(batch, now, report)


def _claim_batch(found: list[Found], now: datetime, report: Report) -> None:
    """One transaction for the batch's new reminders and their events. When another worker
    wrote one of them meanwhile, the batch is rolled back whole and written one reminder
    at a time, so that each of the others is still written once."""
    known = set(
        Reminder.objects.filter(dedupe_key__in=[f.dedupe_key for f in found]).values_list(
            "dedupe_key", flat=True
        )
    )
    fresh = list({f.dedupe_key: f for f in found if f.dedupe_key not in known}.values())
    if not fresh:
        return
    try:
        _write(fresh, now)
    except IntegrityError:
        fresh = [item for item in fresh if _written_alone(item, now)]
    for item in fresh:
        report.created[item.kind] += 1


def _write(found: list[Found], now: datetime) -> None:
    """The reminders and their webhook events, in one transaction."""
    with transaction.atomic():
        Reminder.objects.bulk_create(
            (
                Reminder(
                    kind=item.kind,
                    dedupe_key=item.dedupe_key,
                    organization_id=item.organization_id,
                    api_key=item.api_key,
                    webhook=item.webhook,
                    created_at=now,
                    next_email_at=now,
                )
                for item in found
            ),
            batch_size=ROWS_PER_STATEMENT,
        )
        # The deliveries by one queued task: one attempt is queued per delivery, so many
        # keys falling due at once would hold this transaction and the worker's checks.
        record_key_events(
            (
                key_event(item.event_type, item.api_key, now)
                for item in found
                if item.event_type and item.api_key is not None
            ),
            fan_out_now=False,
        )


def _written_alone(item: Found, now: datetime) -> bool:
    """Whether `item` was written now; False when another worker wrote it first. Any other
    broken constraint is raised: found by a rolling-deploy audit, a release that did not
    fill a column added since (NOT NULL) wrote no reminder, reported "none" and logged
    nothing."""
    try:
        _write([item], now)
    except IntegrityError:
        if Reminder.objects.filter(dedupe_key=item.dedupe_key).exists():
            return False  # another worker wrote it first
        raise
    return True


def find_urgent(now: datetime, report: Report) -> None:
    """What must go out within a minute: leak reports and disabled webhooks."""
    claim(leak_reports(now), now, report)
    claim(disabled_webhooks(now), now, report)


def find_scheduled(now: datetime, report: Report) -> None:
    claim(expiring_keys(now), now, report)
    claim(unused_keys(now), now, report)
    claim(legacy_sunset(now), now, report)


def email_queue_state() -> metrics.QueueState:
    """The `emails` queue for /metrics: reminders not yet emailed that are still tried."""
    waiting = Reminder.objects.filter(
        emailed_at__isnull=True, created_at__gte=timezone.now() - EMAIL_GIVE_UP_AFTER
    )
    return metrics.queue_state_of(waiting, "created_at")


def _unsent(now: datetime):
    """Reminders whose email is due and not held by another worker's claim."""
    return Reminder.objects.filter(
        Q(locked_until__isnull=True) | Q(locked_until__lt=now),
        emailed_at__isnull=True,
        next_email_at__lte=now,
        created_at__gte=now - EMAIL_GIVE_UP_AFTER,
    )


def _claim_messages(now: datetime) -> list[tuple[uuid.UUID, list[Reminder]]]:
    """Up to EMAIL_GROUPS messages' reminders, one message per organization and kind, each
    claimed whole (up to EMAIL_PER_MESSAGE reminders) until `now + EMAIL_LEASE`.

    A claim is one UPDATE that marks the rows it takes with its own token, re-checking
    that each is still unclaimed (PostgreSQL re-reads a row another worker changed
    meanwhile), so two workers never hold the same reminder. The rows a claim wants are
    chosen in a total order (creation, then id: a batch of reminders shares its creation
    time), so two claims of a group at the same moment want the same rows and the second
    finds them taken. A whole group per message: 400 keys falling idle together make one
    message, not one per batch of rows.

    The ids are read first and the UPDATE names them (at most EMAIL_PER_MESSAGE): with
    the sorted, limited subquery inside it, stale statistics after a burst of reminders
    made PostgreSQL re-run that subquery per row (10,056 reminders: one UPDATE of 15.9 s).
    """
    groups = list(
        _unsent(now).order_by().values_list("organization_id", "kind").distinct()[:EMAIL_GROUPS]
    )
    lease = now + EMAIL_LEASE
    messages = []
    for organization_id, kind in groups:
        claim = uuid.uuid4()
        oldest = list(
            _unsent(now)
            .filter(organization_id=organization_id, kind=kind)
            .order_by("created_at", "pk")
            .values_list("pk", flat=True)[:EMAIL_PER_MESSAGE]
        )
        if oldest and _unsent(now).filter(pk__in=oldest).update(locked_until=lease, claim=claim):
            messages.append((claim, _held_by(claim)))
    return messages


def _held_by(claim: uuid.UUID) -> list[Reminder]:
    """The reminders a claim holds, with what their message names."""
    return list(
        Reminder.objects.filter(claim=claim).select_related(
            "organization", "api_key__project", "webhook"
        )
    )


def email_retry_delay(attempts: int) -> timedelta:
    return timedelta(seconds=min(30 * 2 ** max(0, attempts - 1), 3600))


def _still_held(claim: uuid.UUID, reminders: list[Reminder]) -> list[Reminder]:
    """The claim's reminders, its lease renewed, just before its message goes out: the ones
    another worker took once the lease ran out (messages before this one were slow to
    send) are left to it, so no reminder is mailed twice. A renewal and another worker's
    claim of a row are both conditional UPDATEs of it: one of them finds it changed."""
    renewed = Reminder.objects.filter(claim=claim).update(locked_until=timezone.now() + EMAIL_LEASE)
    return reminders if renewed == len(reminders) else _held_by(claim)


def send_pending_emails(now: datetime, report: Report) -> None:
    """One message per claimed group, to each recipient not yet done with. A copy the mail
    server refuses (or a server that fails) leaves the others' alone: they are recorded
    as done, and a retry sends only what is left. A server that fails (unreachable, hung)
    is not tried again in this run: the remaining groups wait for their next try, so a
    dead mail server holds the worker (and the deliveries behind it) once, not per group."""
    messages = _claim_messages(now)
    for index, (claim, claimed_reminders) in enumerate(messages):
        reminders = _still_held(claim, claimed_reminders)
        if not reminders:
            continue
        organization: Organization = reminders[0].organization
        creators = {r.api_key.created_by_id for r in reminders if r.api_key is not None}
        done_before = set.intersection(*(set(r.emailed_to) for r in reminders))
        recipients = mail.recipients(organization.id, {c for c in creators if c})
        to = [address for address in recipients if address not in done_before]
        sent = mail.Sent()
        if to:
            sent = mail.send_reminder_email(reminders[0].kind, organization, reminders, to)
        if sent.done:
            for reminder in reminders:
                reminder.emailed_to = sorted(set(reminder.emailed_to) | set(sent.done))
            Reminder.objects.bulk_update(reminders, ["emailed_to"])
        report.emails_sent += len(sent.accepted)
        if sent.failure is None:
            # The addresses only kept a retry from sending twice: none is coming.
            Reminder.objects.filter(claim=claim).update(
                emailed_at=timezone.now(), emailed_to=[], locked_until=None, last_error=""
            )
            continue
        _retry_later(claim, reminders, sent.failure, report)
        if sent.server_failed:
            for later_claim, later_reminders in messages[index + 1 :]:
                _retry_later(later_claim, later_reminders, sent.failure, report)
            return


def forget_given_up_recipients(*, now: datetime | None = None) -> int:
    """Empty `emailed_to` of the reminders whose email was given up (EMAIL_GIVE_UP_AFTER,
    and a lease for a send still under way): no retry will read it again. One sent in the
    end emptied it itself. The number emptied; the worker's daily housekeeping runs it."""
    now = now or timezone.now()
    return (
        Reminder.objects.filter(
            emailed_at__isnull=True, created_at__lt=now - EMAIL_GIVE_UP_AFTER - EMAIL_LEASE
        )
        .exclude(emailed_to=[])
        .update(emailed_to=[])
    )


def _retry_later(claim, reminders: list[Reminder], failure: Exception, report: Report) -> None:
    reason = type(failure).__name__
    mail.count_email_failure(reason)
    report.email_failures += 1
    logger.warning(
        "reminder email failed: %s",
        reason,
        extra={"organization_id": str(reminders[0].organization_id)},
    )
    attempts = max(r.email_attempts for r in reminders) + 1
    Reminder.objects.filter(claim=claim).update(
        email_attempts=F("email_attempts") + 1,
        next_email_at=timezone.now() + email_retry_delay(attempts),
        locked_until=None,
        last_error=reason[:200],
    )


def run_urgent_checks(now: datetime | None = None) -> Report:
    now = now or timezone.now()
    report = Report()
    find_urgent(now, report)
    send_pending_emails(now, report)
    return report


def run_all_checks(now: datetime | None = None) -> Report:
    """Every check, then every pending email: what `send_notifications` runs."""
    now = now or timezone.now()
    report = Report()
    find_urgent(now, report)
    find_scheduled(now, report)
    send_pending_emails(now, report)
    return report
