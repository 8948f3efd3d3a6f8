"""Delivering one event to one webhook: lease, sign, POST, record, retry or give up.

At least once: the outcome and the next attempt's queued task are written in
one transaction, so a crash leaves the delivery either recorded or still due.
Never twice at once: an attempt first takes the row's lease with a conditional
UPDATE (`locked_until`), which exactly one worker wins.
"""

from __future__ import annotations

import enum
import logging
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Exists, F, Max, Min, OuterRef, Q, QuerySet
from django.utils import timezone
from django_tasks import task

from apps.audit.models import AuditEvent
from apps.audit.services import Action, record_event
from apps.orgs.models import Organization
from apps.webhooks import crypto, outbound, urlsafety
from apps.webhooks.metrics import count_delivery_failure
from apps.webhooks.models import Delivery, DeliveryStatus, Event, Webhook
from core import sealed

logger = logging.getLogger("sigsentry.webhooks")

#: The failure of an attempt whose webhook secret this server cannot open (SECRET_KEY
#: changed without the old one kept as a fallback, or a restore under another key): an
#: ERROR, retried as any other, but never counted against the endpoint (a restore audit:
#: a hundred of them disabled a healthy webhook and emailed its owners that it was dead).
UNREADABLE = "secret unreadable (SECRET_KEY changed)"

RETRY_FOR = timedelta(hours=24)
LEASE = timedelta(seconds=60)
FIRST_RETRY_SECONDS = 10
MAX_RETRY_SECONDS = 3600
DISABLE_AFTER_FAILED_EVENTS = 100
#: A pending delivery this far past due has lost its queued task (one taken with a worker
#: that died, or never queued). One whose lease ran out is lost already: an attempt ends in
#: 10 s, its lease lasts 60.
OVERDUE = timedelta(minutes=5)
#: A delivery due at most this far ahead of a worker's clock was stamped by a host whose
#: clock runs ahead: its task is queued again for that moment. Below the shortest retry
#: delay (7.5 s), so a duplicate task of an attempt already made does not live on.
CLOCK_SKEW = timedelta(seconds=5)
#: Events and their deliveries are kept this long (the deliveries list, the leak-report
#: emails' two-day look-back), then deleted by the worker's daily housekeeping.
EVENT_RETENTION = timedelta(days=30)
#: Events of an organization without webhooks serve only the leak-report emails' look-back
#: (apps.notifications.checks), then are deleted: each holds the key object (its creator's
#: email, last IP and user agent). With a webhook, an event without deliveries may wait for
#: its fan-out (a worker down for days): kept as the others are.
WEBHOOKLESS_EVENT_RETENTION = timedelta(days=2)
#: Events deleted per statement (with their deliveries) by prune_events.
PRUNE_BATCH = 1000


def retry_delay(attempts: int) -> timedelta:
    """Exponential backoff with jitter: ~10 s, 20 s, 40 s … capped at an hour, ±25 %."""
    base = min(FIRST_RETRY_SECONDS * 2 ** max(0, attempts - 1), MAX_RETRY_SECONDS)
    return timedelta(seconds=base * random.uniform(0.75, 1.25))


#: Where an attempt's task sits in the worker's queue (higher first; the scheduled checks
#: and account emails are 10). An organization's first attempt while none of its others
#: waits goes ahead (5); every other attempt, retries and attempts to an endpoint failing
#: now included, waits in its organization's turn (3): one organization's dead or slow
#: endpoints (an attempt may hold a worker 10 s, and is retried for a day), or a burst of
#: its events, take its own turns, one attempt of each organization in turn, never
#: another's. Found by a fairness audit: past an organization's first, attempts ran first
#: in, first out, and another organization's second webhook waited 8 minutes, its retry 6,
#: its next event to an endpoint that had failed once 22, behind one organization's backlog.
FIRST_ATTEMPT_PRIORITY = 5
QUEUED_PRIORITY = 3
#: A due retry's wake-up (`wake_delivery`): a moment's work that queues its attempt in its
#: organization's turn, ahead of the attempts themselves.
WAKE_PRIORITY = FIRST_ATTEMPT_PRIORITY + 1

#: A turn n is queued with `run_after` = this moment + n seconds, long past (ready at
#: once): the worker takes a priority's ready tasks by `run_after`, then by when they were
#: queued, so it runs after every turn before it.
TURNS_FROM = datetime(2000, 1, 1, tzinfo=UTC)


def enqueue_delivery(
    delivery_id: uuid.UUID | str, run_after: datetime | None = None, *, turn: int = 0
) -> None:
    """Queue an attempt; inside the caller's transaction, like the rows it belongs to.
    `turn`: its turn among the queued attempts (`next_turn`; 0: it goes ahead of them)."""
    if turn:
        priority, run_after = QUEUED_PRIORITY, TURNS_FROM + timedelta(seconds=turn)
    else:
        priority = FIRST_ATTEMPT_PRIORITY
    deliver_webhook.using(priority=priority, run_after=run_after).enqueue(str(delivery_id))


def enqueue_retry(delivery_id: uuid.UUID | str, due: datetime) -> None:
    """Wake the delivery when its next attempt is due (`wake_delivery`), which queues the
    attempt in its organization's turn: queued at once for its due time, the retries of
    every organization ran first in, first out behind every queued first attempt (a
    fairness audit: a retry due in 10 s ran after 350 s behind another organization's
    backlog)."""
    wake_delivery.using(priority=WAKE_PRIORITY, run_after=due).enqueue(str(delivery_id))


#: A delivery waiting for a worker: a first attempt not yet made, or a retry queued in
#: its turn (the turn is cleared when an attempt is made).
WAITING = Q(attempts=0) | Q(turn__isnull=False)


@dataclass(frozen=True)
class Pending:
    """What waits for the webhooks of a fan-out (`pending_attempts`)."""

    failing: set  # webhooks with a delivery being retried
    waiting: dict  # webhook → its deliveries waiting for a worker
    last_turn: dict  # webhook → the latest turn among them


def pending_attempts(webhook_ids, besides) -> Pending:
    """Of the webhooks `webhook_ids`, in one query over their pending deliveries (but
    `besides`, being queued now): those with a delivery being retried (failing now), how
    many wait for a worker, and their latest turn."""
    rows = list(
        Delivery.objects.filter(webhook_id__in=webhook_ids, status=DeliveryStatus.PENDING)
        .exclude(pk__in=besides)
        .values("webhook_id")
        .annotate(
            retried=Count("pk", filter=Q(attempts__gt=0)),
            waiting=Count("pk", filter=WAITING),
            last_turn=Max("turn"),
        )
        .values_list("webhook_id", "retried", "waiting", "last_turn")
    )
    return Pending(
        failing={webhook for webhook, retried, _waiting, _turn in rows if retried},
        waiting={webhook: waiting for webhook, _retried, waiting, _turn in rows if waiting},
        last_turn={webhook: turn for webhook, _retried, _waiting, turn in rows if turn},
    )


def serving_turn() -> int:
    """The earliest turn still waiting, of any organization (1 when none waits): where an
    organization joining the queue takes its place (`webhooks_delivery_turn`, an index of
    the deliveries waiting in turn only)."""
    earliest = Delivery.objects.filter(status=DeliveryStatus.PENDING, turn__isnull=False).aggregate(
        earliest=Min("turn")
    )["earliest"]
    return earliest or 1


def next_turn(last: int, serving: int | None = None) -> int:
    """The turn after an organization's `last` queued one (first in, first out within
    it), and not before the turn being served (`serving_turn`, read when not given: one
    joining the queue waits its turn)."""
    return max(last + 1, serving if serving is not None else serving_turn())


def _unclaimed(delivery_id: str, now: datetime):
    return Delivery.objects.filter(
        Q(locked_until__isnull=True) | Q(locked_until__lt=now),
        pk=delivery_id,
        status=DeliveryStatus.PENDING,
    )


def _lock_organization(organization_id) -> None:
    """Taken before an organization's attempts in flight are counted, so that two workers
    counting at once cannot both take the last place, nor one park a delivery while the
    attempt it waits for ends unseen. The organization's row first, as every writer of
    what it holds (`apps.orgs.access.locked_role`); NO KEY: rows referring to it are not held."""
    Organization.objects.select_for_update(no_key=True).filter(pk=organization_id).exists()


#: A delivery to an endpoint failing now: a retry, or to a webhook with one pending.
FAILING = Q(attempts__gt=0) | Exists(
    Delivery.objects.filter(
        webhook=OuterRef("webhook"), status=DeliveryStatus.PENDING, attempts__gt=0
    )
)


def _failing_leases(organization_id, now: datetime) -> QuerySet[Delivery]:
    """The organization's attempts in flight to endpoints failing now; `organization_id`
    may be an `OuterRef`, for the sweep's subquery."""
    return Delivery.objects.filter(
        webhook__organization_id=organization_id,
        status=DeliveryStatus.PENDING,
        locked_until__gte=now,
    ).filter(FAILING)


def _in_flight(organization_id, now: datetime) -> int:
    return _failing_leases(organization_id, now).count()


def _last_turn(organization_id) -> int:
    return (
        Delivery.objects.filter(
            webhook__organization_id=organization_id,
            status=DeliveryStatus.PENDING,
            turn__isnull=False,
        ).aggregate(last=Max("turn"))["last"]
        or 0
    )


class Claim(enum.Enum):
    TAKEN = "taken"  # the lease, for an endpoint that answers
    TAKEN_IN_PLACE = "taken in place"  # the lease, one of its organization's places
    PARKED = "parked"
    MISSED = "missed"  # not due, or another worker's


def _claim(delivery_id: str, organization_id, now: datetime) -> Claim:
    """Take the delivery's lease if it is due and unclaimed, unless it goes to an endpoint
    failing now and its organization has WEBHOOK_ATTEMPTS_PER_ORGANIZATION such attempts
    in flight already: then it is parked in its turn, and the first of them to end queues
    it (`_hand_on`). Turns count attempts and one to a dead endpoint holds a worker 10 s,
    retried for a day, so without this one organization's dead endpoints held every worker
    (a workers audit: another organization's single event waited 8 s with three workers).
    An endpoint that answers is never held back by its organization's dead ones (SPEC
    §4.11: within 10 s), and pays one read for them, no lock (on SQLite every transaction
    takes the write lock)."""
    due = _unclaimed(delivery_id, now).filter(next_attempt_at__lte=now)
    if not due.filter(FAILING).exists():
        taken = due.update(locked_until=now + LEASE, parked_at=None)
        return Claim.TAKEN if taken else Claim.MISSED
    with transaction.atomic():
        _lock_organization(organization_id)
        if _in_flight(organization_id, now) < settings.WEBHOOK_ATTEMPTS_PER_ORGANIZATION:
            taken = due.update(locked_until=now + LEASE, parked_at=None)
            return Claim.TAKEN_IN_PLACE if taken else Claim.MISSED
        found = due.values_list("pk", "turn").first()
        if found is None:
            return Claim.MISSED
        turn = found[1]
        if turn is None:  # a first attempt, which went ahead: it waits in turn now
            turn = next_turn(_last_turn(organization_id))
        due.update(parked_at=now, turn=turn)
        return Claim.PARKED


def _hand_on(organization_id, *, held_a_place: bool) -> None:
    """An attempt of the organization ended: queue its earliest parked deliveries, as many
    as it has places free, in their turns. One that held no place (its endpoint answered
    when it began) looks for parked ones first, without a lock: its endpoint may have
    begun failing meanwhile, and then others counted it (one parked after that look waits
    for the sweep, once no attempt of its organization is in flight)."""
    parked_ones = Delivery.objects.filter(
        webhook__organization_id=organization_id,
        status=DeliveryStatus.PENDING,
        parked_at__isnull=False,
    )
    if not held_a_place and not parked_ones.exists():
        return
    with transaction.atomic():
        _lock_organization(organization_id)
        free = settings.WEBHOOK_ATTEMPTS_PER_ORGANIZATION - _in_flight(
            organization_id, timezone.now()
        )
        if free <= 0:
            return
        parked = list(parked_ones.order_by("turn", "created_at").values_list("pk", "turn")[:free])
        Delivery.objects.filter(pk__in=[pk for pk, _turn in parked]).update(parked_at=None)
        for pk, turn in parked:
            enqueue_delivery(pk, turn=turn)


def _queue_if_nearly_due(delivery_id: str, now: datetime) -> bool:
    """Queue the attempt again for its due time if it is due within CLOCK_SKEW: the web
    process that stamped it runs ahead of this worker, and nothing else would queue it
    before the overdue sweep, minutes later."""
    found = (
        _unclaimed(delivery_id, now)
        .filter(next_attempt_at__gt=now, next_attempt_at__lte=now + CLOCK_SKEW)
        .values_list("next_attempt_at", "attempts", "turn")
        .first()
    )
    if found is None:
        return False
    due, attempts, turn = found
    if attempts or turn:  # a retry, or an attempt in its turn: woken at its due time
        enqueue_retry(delivery_id, due)
    else:
        enqueue_delivery(delivery_id, run_after=due)
    return True


def attempt_delivery(delivery_id: str) -> str:
    """One attempt if the delivery is due and unclaimed; returns what happened (for logs)."""
    now = timezone.now()
    organization_id = (
        Delivery.objects.filter(pk=delivery_id)
        .values_list("webhook__organization_id", flat=True)
        .first()
    )
    if organization_id is None:
        return "skipped"  # deleted with its webhook
    claim = _claim(delivery_id, organization_id, now)
    if claim is Claim.PARKED:
        return "parked: its organization's attempts are in flight"
    if claim is Claim.MISSED:
        return "not due: queued again" if _queue_if_nearly_due(delivery_id, now) else "skipped"
    # An attempt that raises keeps its lease until it runs out; the sweep queues it again,
    # and it hands on when it ends.
    outcome = _attempt(delivery_id)
    _hand_on(organization_id, held_a_place=claim is Claim.TAKEN_IN_PLACE)
    return outcome


def _attempt(delivery_id: str) -> str:
    delivery = Delivery.objects.select_related("event", "webhook").filter(pk=delivery_id).first()
    if delivery is None:
        return "skipped"  # deleted with its webhook since the claim
    webhook = delivery.webhook
    if not webhook.is_enabled:
        Delivery.objects.filter(pk=delivery.pk).update(
            status=DeliveryStatus.FAILED, last_error="webhook disabled", locked_until=None
        )
        return "webhook disabled"
    body = delivery.event.body()
    started = time.monotonic()  # the lookup and the POST share one deadline
    try:
        target = urlsafety.resolve(webhook.url)  # DNS may have changed since creation
        secret = crypto.decrypt_secret(webhook.secret_ciphertext)
    except urlsafety.LookupTimedOut:
        outcome = outbound.Outcome(None, "host lookup timed out")
    except urlsafety.UnsafeUrl:
        outcome = outbound.Outcome(None, "address not allowed")
    except sealed.Unreadable:
        logger.error(
            "webhook secret unreadable: SECRET_KEY changed without the old one in "
            "SECRET_KEY_FALLBACKS (manage.py reseal_secrets names what it cannot open)",
            extra={"webhook_id": str(webhook.pk), "delivery_id": str(delivery.pk)},
        )
        outcome = outbound.Outcome(None, UNREADABLE)
    else:
        header = crypto.signature(secret, int(time.time()), body)
        outcome = outbound.post(target, body, {crypto.SIGNATURE_HEADER: header}, started=started)
    _record(delivery, outcome, timezone.now())
    return "delivered" if outcome.ok else (outcome.error or f"http {outcome.status_code}")


def _record(delivery: Delivery, outcome: outbound.Outcome, now: datetime) -> None:
    attempt = {
        "attempts": F("attempts") + 1,
        "turn": None,  # taken: the next attempt, if any, waits for a new one
        "last_status_code": outcome.status_code,
        "last_error": outcome.error[:200],
        "last_attempt_at": now,
        "locked_until": None,
    }
    rows = Delivery.objects.filter(pk=delivery.pk)
    webhooks = Webhook.objects.filter(pk=delivery.webhook_id)
    # The webhook's row is written before the delivery's, in the order disable_webhook
    # locks them, so a success beside the failure that disables the webhook cannot deadlock.
    with transaction.atomic():
        if outcome.ok:
            webhooks.filter(consecutive_failures__gt=0).update(consecutive_failures=0)
            rows.update(status=DeliveryStatus.DELIVERED, **attempt)
            return
        reason = outcome.error or f"http {outcome.status_code}"
        count_delivery_failure(reason)
        logger.info(
            "webhook delivery failed: %s",
            reason,
            extra={
                "webhook_id": str(delivery.webhook_id),
                "event_id": str(delivery.event_id),
                "delivery_id": str(delivery.pk),
                "attempt": delivery.attempts + 1,
            },
        )
        if now - delivery.event.created_at >= RETRY_FOR:
            rows.update(status=DeliveryStatus.FAILED, **attempt)
            if outcome.error == UNREADABLE:
                return  # this server's fault, not the endpoint's: it never disables a webhook
            webhooks.update(consecutive_failures=F("consecutive_failures") + 1)
            webhook = webhooks.select_for_update().first()  # None: deleted during the attempt
            if (
                webhook is not None
                and webhook.is_enabled
                and webhook.consecutive_failures >= DISABLE_AFTER_FAILED_EVENTS
            ):
                disable_webhook(webhook=webhook, now=now)
            return
        # A receiver that asks for time (429 or 503 with Retry-After) gets it, up to the
        # longest backoff; never sooner than the backoff.
        asked = timedelta(seconds=min(outcome.retry_after or 0, MAX_RETRY_SECONDS))
        next_attempt_at = now + max(retry_delay(delivery.attempts + 1), asked)
        if rows.update(next_attempt_at=next_attempt_at, **attempt):  # 0: deleted meanwhile
            enqueue_retry(delivery.pk, next_attempt_at)


def disable_webhook(*, webhook: Webhook, now: datetime) -> None:
    """Stop sending to a dead endpoint (as Stripe does); the owners are emailed by the worker."""
    with transaction.atomic():
        if not Webhook.objects.filter(pk=webhook.pk, disabled_at__isnull=True).update(
            disabled_at=now
        ):
            return
        Delivery.objects.filter(webhook=webhook, status=DeliveryStatus.PENDING).update(
            status=DeliveryStatus.FAILED,
            last_error="webhook disabled",
            locked_until=None,
            parked_at=None,
        )
        record_event(
            action=Action.WEBHOOK_DISABLED,
            organization_id=webhook.organization_id,
            actor_type=AuditEvent.ActorType.SYSTEM,
            target_type="webhook",
            target_id=webhook.id,
            target_label=webhook.url_host,
            details={"consecutiveFailedEvents": webhook.consecutive_failures},
        )
    logger.warning("webhook disabled after failed events", extra={"webhook_id": str(webhook.pk)})


def requeue_overdue(now: datetime | None = None) -> int:
    """Queue again the pending deliveries whose task was lost; a duplicate attempt is a no-op."""
    now = now or timezone.now()
    with transaction.atomic():
        # Locked and read in one step: a worker that meanwhile recorded a failed attempt
        # (and its backoff) holds the row or moved it out of the conditions, so its delay
        # stands. Locked rows are skipped: a worker has them now.
        # A lease run out is an attempt lost with its worker (killed mid-attempt): queued
        # again at once, not 5 minutes after its due time (a workers audit: a kill -9's
        # delivery waited 6 min 21 s, one answered while PostgreSQL was down ~9.5 min).
        # A parked delivery waits for its organization's attempts in flight, which queue it
        # when they end: lost only once none is.
        in_flight = _failing_leases(OuterRef("webhook__organization_id"), now)
        overdue = list(
            Delivery.objects.select_for_update(of=("self",), skip_locked=True)
            .filter(
                Q(locked_until__lt=now)
                | Q(locked_until__isnull=True, next_attempt_at__lt=now - OVERDUE),
                status=DeliveryStatus.PENDING,
            )
            .exclude(Q(parked_at__isnull=False) & Exists(in_flight))
            .values_list("pk", flat=True)[:1000]
        )
        # Due now and unleased, so the next sweep does not queue them again while this task
        # waits.
        Delivery.objects.filter(pk__in=overdue).update(
            next_attempt_at=now, locked_until=None, parked_at=None
        )
        for delivery_id in overdue:
            enqueue_retry(delivery_id, now)  # lost by a worker: it was slow
    return len(overdue)


def prune_events(now: datetime | None = None) -> int:
    """Delete events older than EVENT_RETENTION, with their deliveries, and those of an
    organization without webhooks older than WEBHOOKLESS_EVENT_RETENTION; an event with a
    delivery still pending is kept until that delivery is done. The number of events.

    PRUNE_BATCH events at a time: Django deletes the deliveries of the events it collected
    by an `IN` list of their ids, so one delete of a day's events would hold them all in
    memory, lock them all in one transaction, and bind more parameters than PostgreSQL
    takes (65,535) once a day has that many.
    """
    now = now or timezone.now()
    without_webhooks = ~Exists(Webhook.objects.filter(organization=OuterRef("organization")))
    old = Event.objects.filter(
        Q(created_at__lt=now - EVENT_RETENTION)
        | Q(without_webhooks, created_at__lt=now - WEBHOOKLESS_EVENT_RETENTION)
    ).exclude(deliveries__status=DeliveryStatus.PENDING)
    pruned = 0
    while batch := list(old.values_list("pk", flat=True)[:PRUNE_BATCH]):
        _total, by_model = old.filter(pk__in=batch).delete()
        pruned += by_model.get(Event._meta.label, 0)
    return pruned


@task()
def deliver_webhook(delivery_id: str) -> str:
    return attempt_delivery(delivery_id)


@task(priority=WAKE_PRIORITY)
def wake_delivery(delivery_id: str) -> str:
    """A retry is due, or an attempt was lost (`enqueue_retry`): queue the attempt in its
    organization's turn, or again in the turn it has (its task was lost with a worker, or
    came to a worker whose clock runs behind): never "queued already" (a review found such
    a delivery pending for good, neither attempted nor failed)."""
    with transaction.atomic():
        found = (
            # the delivery's row only: the webhook's is locked before it elsewhere
            Delivery.objects.select_for_update(of=("self",))
            .filter(pk=delivery_id, status=DeliveryStatus.PENDING)
            .values_list("webhook__organization_id", "turn")
            .first()
        )
        if found is None:
            return "skipped"  # made or deleted
        organization_id, turn = found
        if turn is None:
            turn = next_turn(_last_turn(organization_id))
            Delivery.objects.filter(pk=delivery_id).update(turn=turn)
        enqueue_delivery(delivery_id, turn=turn)  # a duplicate finds it made or not due
    return f"queued at turn {turn}"
