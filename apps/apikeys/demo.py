"""Believable usage history for the demo's keys (`manage.py seed_demo`), so the key pages'
charts show something on a first look. Demo data only: never called by the product.

Every row carries the epoch `demo`; seeding again replaces them, relative to now.
Hourly rows cover the last 48 hours, daily rows the last 90 days, and each day's
row is the sum of its hours, as counting would have left them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from apps.apikeys.gate.counters import bucket_start
from apps.apikeys.models import ApiKey, Granularity, KeyUsage, KeyUsageIp
from apps.apikeys.usage.answer import SPAN

EPOCH = "demo"
DAYS = SPAN[Granularity.DAY]

#: Per-hour request rate: the shape of each kind of client.
Shape = Callable[[datetime], float]


def business_hours(moment: datetime) -> float:
    """A CI pipeline: deploys on weekday working hours (UTC), a nightly run."""
    if moment.hour == 2:
        return 6.0
    if moment.weekday() >= 5 or not 7 <= moment.hour <= 18:
        return 0.3
    return 9.0 + 7.0 * math.sin(math.pi * (moment.hour - 7) / 11)


def browsers(moment: datetime) -> float:
    """An SDK key in web pages: a daily wave of visitors, busier on weekends."""
    wave = 0.55 + 0.45 * math.sin(math.pi * ((moment.hour - 6) % 24) / 24) ** 2
    return 70.0 * wave * (1.3 if moment.weekday() >= 5 else 1.0)


def nightly(moment: datetime) -> float:
    """A reporting job: one burst a night."""
    return 40.0 if moment.hour == 3 else 0.0


#: The demo keys by name: (shape, share refused, days ago it stopped, its client IPs, agent).
PROFILES: dict[str, tuple[Shape, float, int, tuple[str, ...], str]] = {
    "Checkout web SDK": (
        browsers,
        0.02,
        0,
        ("203.0.113.24", "198.51.100.77", "2001:db8:4a::1c", "192.0.2.145", "203.0.113.90"),
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 Safari/605.1.15",
    ),
    "CI deploy pipeline": (
        business_hours,
        0.01,
        0,
        ("198.51.100.23", "198.51.100.24"),
        "sigsentry-cli/1.8.2 python-requests/2.32.3",
    ),
    "Org-wide reporting": (
        nightly,
        0.0,
        41,
        ("192.0.2.60",),
        "reporting-cron/0.4 (+https://intranet.example.com)",
    ),
    "Old build server": (
        business_hours,
        0.0,
        12,
        ("192.0.2.8",),
        "curl/7.68.0",
    ),
}


def seed_demo_usage(keys: list[ApiKey], now: datetime | None = None) -> None:
    """Replace the demo usage of `keys` (those named in PROFILES) and backdate them so the
    'unused for 30 / 90 days' filter has something to find."""
    now = now or timezone.now()
    rng = random.Random(20261127)  # the same picture on every run
    this_hour = bucket_start(now, Granularity.HOUR)
    first_day = bucket_start(now, Granularity.DAY) - timedelta(days=DAYS - 1)
    with transaction.atomic():
        for api_key in keys:
            if api_key.name not in PROFILES:
                continue
            shape, refused_share, stopped_days, ips, agent = PROFILES[api_key.name]
            KeyUsage.objects.filter(key=api_key, epoch=EPOCH).delete()
            KeyUsageIp.objects.filter(key=api_key, epoch=EPOCH).delete()
            stopped = now - timedelta(days=stopped_days) if stopped_days else now
            hours: list[tuple[datetime, int, int]] = []
            moment = first_day
            while moment <= this_hour:
                if moment <= stopped:
                    rate = shape(moment)
                    if moment == this_hour:
                        rate *= now.minute / 60
                    requests = max(0, round(rng.gauss(rate, math.sqrt(rate) + 0.1)))
                    if moment == this_hour and not stopped_days:
                        requests = max(requests, 1)  # "last used a few minutes ago"
                    refused = sum(rng.random() < refused_share for _ in range(requests))
                    hours.append((moment, requests, refused))
                moment += timedelta(hours=1)
            _store(api_key, hours, this_hour)
            total = sum(requests for _, requests, _ in hours)
            last = max((m for m, requests, _ in hours if requests), default=None)
            if last is not None:
                last_used = (
                    now - timedelta(minutes=4)
                    if not stopped_days
                    else last + timedelta(minutes=rng.randint(5, 55))
                )
                for index, ip in enumerate(ips):
                    KeyUsageIp.objects.create(
                        key=api_key,
                        ip=ip,
                        epoch=EPOCH,
                        requests=max(1, total // (2 ** (index + 1))),
                        last_seen_at=last_used - timedelta(minutes=7 * index),
                    )
                ApiKey.objects.filter(pk=api_key.pk).update(
                    last_used_at=last_used, last_used_ip=ips[0], last_used_user_agent=agent
                )
            ApiKey.objects.filter(pk=api_key.pk).update(created_at=now - timedelta(days=120))


def _store(api_key: ApiKey, hours: list[tuple[datetime, int, int]], this_hour: datetime) -> None:
    days: dict[datetime, list[int]] = {}
    rows = []
    for moment, requests, refused in hours:
        day = days.setdefault(bucket_start(moment, Granularity.DAY), [0, 0])
        day[0] += requests
        day[1] += refused
        if moment > this_hour - timedelta(hours=SPAN[Granularity.HOUR]) and requests:
            rows.append(
                KeyUsage(
                    key=api_key,
                    granularity=Granularity.HOUR,
                    start=moment,
                    epoch=EPOCH,
                    requests=requests,
                    refused=refused,
                )
            )
    rows += [
        KeyUsage(
            key=api_key,
            granularity=Granularity.DAY,
            start=day,
            epoch=EPOCH,
            requests=requests,
            refused=refused,
        )
        for day, (requests, refused) in days.items()
        if requests
    ]
    KeyUsage.objects.bulk_create(rows)
