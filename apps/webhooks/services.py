"""Writes on webhooks (SPEC §4.11): create, delete, re-enable, and the key-event outbox.

Invariants: the plaintext secret exists only in the `CreatedWebhook` that
`insert_webhook` returns (the row holds a Fernet token); audit events and logs
name a webhook by its host, never by its full URL (a path can hold a token).

`record_key_events` is called by apps.apikeys inside the transaction that
changed the key, with the key object already serialized (apps.apikeys owns that
shape); it writes the event, one delivery per subscribed webhook and a queued
task per delivery, all in that same transaction.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django_tasks import task

from apps.audit.services import Action, record_event
from apps.orgs.models import Organization
from apps.webhooks import crypto, urlsafety
from apps.webhooks.delivery import (
    FIRST_ATTEMPT_PRIORITY,
    RETRY_FOR,
    enqueue_delivery,
    next_turn,
    pending_attempts,
    serving_turn,
)
from apps.webhooks.models import Delivery, Event, EventType, Webhook
from core import throttling
from core.errors import ValidationFailed
from core.queries import ROWS_PER_STATEMENT, refuse_when_full
from core.tasks import requeue_stalled
from core.validation import FieldErrors, as_sent

logger = logging.getLogger("sigsentry.webhooks")

MAX_WEBHOOKS_PER_ORGANIZATION = 20


@dataclass(frozen=True, slots=True)
class CreatedWebhook:
    webhook: Webhook
    secret: str  # shown once, never stored in clear


@dataclass(frozen=True, slots=True)
class KeyEvent:
    """What happened to a key; `key` is the SPEC §4.3 key object (never the key itself)."""

    type: str
    organization_id: Any
    key: dict[str, Any]


def validate_url(url: Any) -> str:
    try:
        urlsafety.resolve(url)
    except urlsafety.UnsafeUrl as exc:
        raise ValidationFailed({"url": [str(exc)]}) from exc
    return url.strip()


def validate_events(events: Any) -> list[str]:
    if not isinstance(events, list | tuple) or not events:
        raise ValidationFailed({"events": ["Choose at least one event."]})
    unknown = [e for e in events if not isinstance(e, str) or e not in EventType.values]
    if unknown:
        raise ValidationFailed(
            {"events": [f"Unknown event: {as_sent(e, 60)}" for e in unknown[:5]]}
        )
    return [e for e in EventType.values if e in events]


@dataclass(frozen=True, slots=True)
class WebhookInput:
    """A webhook's URL and events, checked (`checked_webhook_input`)."""

    url: str
    events: list[str]


def checked_webhook_input(*, actor: Any, url: Any, events: Any) -> WebhookInput:
    """The URL and events of a webhook to create, checked: 400 with every failing field at
    once, as a form shows them. Called before the caller's transaction (`as_manager`): the
    URL's check waits up to 5 s for its host's lookup, and a transaction held that long
    keeps a demotion of the caller waiting, and on SQLite every other write."""
    errors = FieldErrors()
    events = errors.check(validate_events, events)
    # The lookup runs in the request: a free account held a worker 5 s a request with a
    # name whose server never answers (the DoS audit), hence the throttle.
    throttling.enforce("webhook_create_user", str(actor.pk))
    url = errors.check(validate_url, url)
    errors.raise_any()
    return WebhookInput(url=url, events=events)


def create_webhook(
    *,
    actor: Any,
    organization: Organization,
    url: Any,
    events: Any,
    request: HttpRequest | None = None,
) -> CreatedWebhook:
    checked = checked_webhook_input(actor=actor, url=url, events=events)
    return insert_webhook(actor=actor, organization=organization, checked=checked, request=request)


def insert_webhook(
    *,
    actor: Any,
    organization: Organization,
    checked: WebhookInput,
    request: HttpRequest | None = None,
) -> CreatedWebhook:
    """Store a `checked_webhook_input` with a new secret, audited; 400 when the
    organization has its `MAX_WEBHOOKS_PER_ORGANIZATION`."""
    secret = crypto.generate_secret()
    with transaction.atomic():
        refuse_when_full(
            Organization.objects.filter(pk=organization.pk),
            Webhook.objects.filter(organization=organization),
            MAX_WEBHOOKS_PER_ORGANIZATION,
            "url",
            f"At most {MAX_WEBHOOKS_PER_ORGANIZATION} webhooks per organization.",
        )
        webhook = Webhook.objects.create(
            organization=organization,
            url=checked.url,
            events=checked.events,
            secret_ciphertext=crypto.encrypt_secret(secret),
            created_by=actor,
            created_by_email=actor.email if actor is not None else "",
        )
        _audit(Action.WEBHOOK_CREATED, webhook, actor, request, {"events": checked.events})
    return CreatedWebhook(webhook=webhook, secret=secret)


def delete_webhook(
    *, actor: Any, webhook: Webhook, request: HttpRequest | None = None, reason: str = ""
) -> None:
    """Remove the webhook and its delivery log; queued attempts find nothing and stop.

    The row is locked before its deliveries are collected: a key change that has just
    read the webhook (`record_key_events`) commits its delivery first, and is deleted
    with the rest, rather than left pointing at a deleted webhook. A `reason`, when given,
    is in the event's details (the system's deletion again after a restore).
    """
    with transaction.atomic():
        if Webhook.objects.select_for_update().filter(pk=webhook.pk).exists():
            Webhook.objects.filter(pk=webhook.pk).delete()
            details = {"reason": reason} if reason else {}
            _audit(Action.WEBHOOK_DELETED, webhook, actor, request, details)


def enable_webhook(*, actor: Any, webhook: Webhook, request: HttpRequest | None = None) -> Webhook:
    """Re-enable a disabled webhook: new events go out again, the failure count restarts."""
    with transaction.atomic():
        if Webhook.objects.filter(pk=webhook.pk, disabled_at__isnull=False).update(
            disabled_at=None, consecutive_failures=0
        ):
            _audit(Action.WEBHOOK_ENABLED, webhook, actor, request, {})
    webhook.refresh_from_db()
    return webhook


#: A fan-out goes ahead of the attempts it queues (and behind the scheduled checks).
FAN_OUT_PRIORITY = FIRST_ATTEMPT_PRIORITY + 1


def _audit(action: str, webhook: Webhook, actor: Any, request, details: dict) -> None:
    record_event(
        action=action,
        organization_id=webhook.organization_id,
        actor_user=actor,
        target_type="webhook",
        target_id=webhook.id,
        target_label=webhook.url_host,
        request=request,
        details=details,
    )


def record_key_events(
    events: Iterable[KeyEvent], now: datetime | None = None, *, fan_out_now: bool = True
) -> list[Event]:
    """The outbox write: events, their deliveries and the queued attempts, in one transaction.

    With `fan_out_now` False, the deliveries and their attempts are left to one queued task
    (`fan_out_events`, in the same transaction): the caller's time then does not grow with
    the organizations' webhooks. A leak report must take the same time whether or not its
    keys existed, and a GitHub report may name 1,000 of them: one attempt queued per key and
    webhook took ~25 ms a key with 20 webhooks, in the request."""
    events = list(events)
    if not events:
        return []
    now = now or timezone.now()
    with transaction.atomic():
        rows = Event.objects.bulk_create(
            (
                Event(
                    organization_id=uuid.UUID(str(e.organization_id)),
                    type=e.type,
                    data={"key": e.key},
                    created_at=now,
                )
                for e in events
            ),
            batch_size=ROWS_PER_STATEMENT,
        )
        if fan_out_now:
            _fan_out(rows, now, again=False)
        else:
            fan_out_events.enqueue([str(row.pk) for row in rows])
    return rows


def _fan_out(rows: list[Event], now: datetime, *, again: bool) -> None:
    """Each event's deliveries (one per enabled webhook that takes its type) and their first
    attempts, queued fairly; `again`: some may exist already (made once only)."""
    # Locked (in one order), so a webhook deleted meanwhile waits for this transaction
    # or is not read: a revocation never fails on a delivery to a deleted webhook.
    webhooks = list(
        Webhook.objects.select_for_update(no_key=True)
        .filter(
            organization_id__in={row.organization_id for row in rows},
            disabled_at__isnull=True,
        )
        .only("id", "organization_id", "events")
        .order_by("id")
    )
    made = set()
    if again:
        made = set(Delivery.objects.filter(event__in=rows).values_list("event_id", "webhook_id"))
    deliveries = Delivery.objects.bulk_create(
        (
            Delivery(event=row, webhook=webhook, next_attempt_at=now, created_at=now)
            for row in rows
            for webhook in webhooks
            if webhook.organization_id == row.organization_id
            and row.type in webhook.events
            and (row.pk, webhook.pk) not in made
        ),
        batch_size=ROWS_PER_STATEMENT,
    )
    if deliveries:
        _enqueue_fairly(deliveries, {w.id: w.organization_id for w in webhooks})


@task(priority=FAN_OUT_PRIORITY)
def fan_out_events(event_ids: list[str]) -> str:
    """The deliveries of events recorded without them (`record_key_events`), in one
    transaction: run again (a worker stopped mid-task, `requeue_stalled`), it makes only the
    ones missing."""
    with transaction.atomic():
        rows = list(Event.objects.filter(pk__in=event_ids).order_by("created_at", "id"))
        _fan_out(rows, timezone.now(), again=True)
    return f"{len(rows)} events"


def requeue_stalled_fan_outs() -> int:
    """The fan-outs that raised or whose worker stopped mid-task, ready again (the scheduled
    checks): before them, the events of a failed one were never delivered."""
    # one that failed (a deadlock, a timeout, a worker stopped at once): for as long as its
    # deliveries would be retried
    requeued = requeue_stalled(fan_out_events, failed_within=RETRY_FOR)
    if requeued:
        logger.warning("%d webhook fan-outs requeued: failed, or their worker stopped", requeued)
    return requeued


def _enqueue_fairly(deliveries: list[Delivery], organization_of: dict) -> None:
    """Each organization's first attempt while none of its others waits ahead, the rest in
    its organization's turn (`apps.webhooks.delivery`): one worker runs one attempt at a
    time, up to 10 s each."""
    pending = pending_attempts(list(organization_of), besides=[d.pk for d in deliveries])
    waiting, last_turn = Counter(), Counter()  # per organization
    for webhook_id, count in pending.waiting.items():
        waiting[organization_of[webhook_id]] += count
    for webhook_id, turn in pending.last_turn.items():
        organization_id = organization_of[webhook_id]
        last_turn[organization_id] = max(last_turn[organization_id], turn)
    serving, turned = None, []
    for delivery in deliveries:
        organization_id = organization_of[delivery.webhook_id]
        if not waiting[organization_id] and delivery.webhook_id not in pending.failing:
            enqueue_delivery(delivery.pk)  # its organization's first: ahead
        else:  # in its organization's turn, as an endpoint failing now always is
            serving = serving or serving_turn()
            turn = next_turn(last_turn[organization_id], serving)
            delivery.turn = last_turn[organization_id] = turn
            turned.append(delivery)
            enqueue_delivery(delivery.pk, turn=turn)
        waiting[organization_id] += 1
    Delivery.objects.bulk_update(turned, ["turn"], batch_size=ROWS_PER_STATEMENT)


def forget_creator_in_events(user_id: Any) -> int:
    """Before an account is deleted (in its transaction): the key events that name it as
    their key's creator (`data.key.createdBy`, the key as the API answered it) name no one
    any more (null, as the API answers for that key from now on). Kept for
    `EVENT_RETENTION`, listed to the organization and sent again by each retry of a
    delivery, they held the address the keys themselves no longer do (`core.creators`).
    How many events changed."""
    events = list(Event.objects.filter(data__key__createdBy__id=str(user_id)).only("id", "data"))
    for event in events:
        event.data["key"]["createdBy"] = None
    Event.objects.bulk_update(events, ["data"], batch_size=ROWS_PER_STATEMENT)
    return len(events)
