"""Leaked-key reports (SPEC §4.7, §4.12): the public report endpoint and GitHub's secret
scanning both end here.

Active secret keys are revoked; SDK keys, public by design, are only flagged. The
reporter is never told what a report did.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from apps.apikeys import keyformat
from apps.apikeys.models import ApiKey, KeyStatus, KeyType
from apps.apikeys.services import key_event
from apps.audit.models import AuditEvent
from apps.audit.services import Action, record_events
from apps.webhooks.models import EventType
from apps.webhooks.services import record_key_events
from core.net import client_ip, user_agent

logger = logging.getLogger("sigsentry.apikeys")

MAX_LEAK_REPORT_KEYS = 100


def candidate_digest(candidate: Any) -> str | None:
    if not isinstance(candidate, str) or len(candidate) > 512:
        return None
    candidate = candidate.strip()
    if keyformat.is_valid_key(candidate) or keyformat.is_legacy_key(candidate):
        return keyformat.digest(candidate)
    return None


#: An SDK key is flagged (audit, webhook, email) at most once per this interval:
#: anyone can report a public key, so reports must not flood its owners.
LEAK_FLAG_INTERVAL = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class LeakCandidate:
    candidate: Any
    url: str = ""  # where the key was found, when the reporter says (GitHub does)


@dataclass(frozen=True, slots=True)
class LeakReport:
    """What a leak report did, for the audit and tests only: the API never tells the reporter."""

    revoked: int
    flagged: int


@dataclass(frozen=True, slots=True)
class LeakOutcome:
    known_digests: frozenset[str]  # existing SigSentry keys among the candidates, any status
    revoked: int
    flagged: int


def handle_leak_reports(
    *, reports: Iterable[LeakCandidate], reporter: str = "leak report", request=None
) -> LeakOutcome:
    """Act on leaked-key reports (SPEC §4.7, §4.12), one query for all candidates.

    Active secret keys (`ss_secret_`, `ss_org_`, legacy) are revoked with a
    `key.revoked_by_leak_report` event. SDK keys are public by design, so a report
    never revokes one — anyone could break a customer's site — it records
    `key.leak_reported` (at most once a day per key) and the organization is
    notified. Strings that are not well-formed keys cost no query.
    """
    urls: dict[str, str] = {}
    for report in reports:
        digest = candidate_digest(report.candidate)
        if digest is not None:
            urls.setdefault(digest, report.url if isinstance(report.url, str) else "")
    if not urls:
        return LeakOutcome(frozenset(), 0, 0)
    now = timezone.now()
    ip, agent = (client_ip(request), user_agent(request)) if request is not None else (None, "")
    with transaction.atomic():
        # In one order: two reports naming the same keys lock them alike.
        found = list(ApiKey.objects.select_for_update().filter(digest__in=urls).order_by("pk"))
        # SPEC §4.7: active keys; one expired already is dead (no revocation, no email)
        live = [k for k in found if k.status_at(now) == KeyStatus.ACTIVE]
        to_revoke = [k for k in live if k.type != KeyType.PUBLIC]
        public = [k for k in live if k.type == KeyType.PUBLIC]
        recently_flagged = set()
        if public:
            recently_flagged = set(
                AuditEvent.objects.filter(  # the (organization, action, time) index
                    organization_id__in={k.organization_id for k in public},
                    action=Action.KEY_LEAK_REPORTED,
                    target_type="key",
                    target_id__in=[str(k.id) for k in public],
                    created_at__gte=now - LEAK_FLAG_INTERVAL,
                ).values_list("target_id", flat=True)
            )
        to_flag = [k for k in public if str(k.id) not in recently_flagged]
        if to_revoke:
            ApiKey.objects.filter(pk__in=[k.pk for k in to_revoke]).update(
                revoked_at=now, revoked_reason="leak_report"
            )
        if to_flag:
            ApiKey.objects.filter(pk__in=[k.pk for k in to_flag]).update(leak_reported_at=now)

        def audit(key: ApiKey, action: str, reason: str) -> AuditEvent:
            url = keyformat.mask_keys(urls[key.digest])[:500]  # a link may quote a key
            return AuditEvent(
                action=action,
                organization_id=key.organization_id,
                project_id=key.project_id,
                actor_type=AuditEvent.ActorType.ANONYMOUS,
                actor_label=reporter,
                target_type="key",
                target_id=str(key.id),
                target_label=key.prefix,
                ip=ip,
                user_agent=agent,
                details={"name": key.name, "reason": reason} | ({"url": url} if url else {}),
                created_at=now,
            )

        record_events(
            [
                audit(k, Action.KEY_REVOKED_BY_LEAK_REPORT, "revoked by leak report")
                for k in to_revoke
            ]
            + [audit(k, Action.KEY_LEAK_REPORTED, "flagged by leak report") for k in to_flag]
        )
        changed = {k.pk for k in to_revoke} | {k.pk for k in to_flag}
        if changed:
            event_types = {k.pk: EventType.KEY_REVOKED_BY_LEAK_REPORT for k in to_revoke} | {
                k.pk: EventType.KEY_LEAK_REPORTED for k in to_flag
            }
            record_key_events(  # deliveries by the worker: the same time, matched or not
                (
                    key_event(event_types[k.pk], k, now)
                    for k in ApiKey.objects.filter(pk__in=changed).select_related("created_by")
                ),
                fan_out_now=False,
            )
    if changed:
        logger.warning(
            "%s: %d key(s) revoked, %d SDK key(s) flagged", reporter, len(to_revoke), len(to_flag)
        )
    return LeakOutcome(frozenset(k.digest for k in found), len(to_revoke), len(to_flag))


def report_leaked_keys(
    *, candidates: Iterable[Any], request: HttpRequest | None = None
) -> LeakReport:
    """The public leak report (SPEC §4.7): what it did, for the audit and tests only; the
    API never tells the reporter."""
    outcome = handle_leak_reports(
        reports=[LeakCandidate(candidate) for candidate in candidates], request=request
    )
    return LeakReport(revoked=outcome.revoked, flagged=outcome.flagged)
