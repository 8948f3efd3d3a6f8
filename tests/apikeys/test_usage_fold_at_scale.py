"""Folding the usage IPs of ended epochs at a large tenant's volume (a scale audit): a few
statements per thousand (key, IP) pairs, and a copy that folds long keeps its lock."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.apikeys.gate.counters import add_counts
from apps.apikeys.models import KeyUsageIp
from apps.apikeys.usage import flush
from core.sharedredis import redis_client
from tests.apikeys.usage_helpers import requires_redis
from tests.factories import bulk_secret_keys

pytestmark = pytest.mark.django_db

#: Minutes ago each epoch was last seen: e1 and e2 are folded, e3 (the newest ended) and e4
#: (within FOLD_AFTER) stay.
EPOCHS = {"e1": 40, "e2": 30, "e3": 20, "e4": 1}


def _rows(keys, ips, now, *, folded_before: bool) -> None:
    rows = [
        KeyUsageIp(
            key=key,
            ip=ip,
            epoch=epoch,
            requests=number + 1,
            last_seen_at=now - timedelta(minutes=ago),
        )
        for key in keys
        for ip in ips
        for number, (epoch, ago) in enumerate(EPOCHS.items())
    ]
    if folded_before:  # an earlier fold's row, seen later than e1 and e2 (clock skew)
        rows += [
            KeyUsageIp(
                key=key,
                ip=ip,
                epoch=flush.FOLDED,
                requests=100,
                last_seen_at=now - timedelta(minutes=25),
            )
            for key in keys[::2]
            for ip in ips
        ]
    KeyUsageIp.objects.bulk_create(rows, batch_size=500)


@pytest.mark.parametrize("every_key", [False, True], ids=["a-copy", "the-housekeeping"])
def test_many_pairs_are_folded_in_a_few_statements_per_thousand(project, every_key):
    """3,000 pairs took 22.9 s, six statements and a transaction each."""
    now = timezone.now()
    keys = bulk_secret_keys(project, 24)
    ips = [f"203.0.113.{number + 1}" for number in range(50)]  # 1,200 pairs
    _rows(keys, ips, now, folded_before=True)

    with CaptureQueriesContext(connection) as queries:
        if every_key:
            flush.fold_idle_keys(now=now)
        else:
            flush._fold_ended_epochs({str(key.id) for key in keys}, now=now)

    # The pairs; per 1,000 pairs: the locked rows, the deletes (500 ids each), the upserts.
    assert len(queries) <= 16, len(queries)
    assert KeyUsageIp.objects.count() == len(keys) * len(ips) * 3
    for index, key in enumerate(keys):
        rows = KeyUsageIp.objects.filter(key=key, ip=ips[index]).values_list(
            "epoch", "requests", "last_seen_at"
        )
        earlier = index % 2 == 0
        assert {epoch: (requests, seen) for epoch, requests, seen in rows} == {
            flush.FOLDED: (
                1 + 2 + (100 if earlier else 0),
                now - timedelta(minutes=25 if earlier else 30),
            ),
            "e3": (3, now - timedelta(minutes=20)),
            "e4": (4, now - timedelta(minutes=1)),
        }

    with CaptureQueriesContext(connection) as again:
        flush.fold_idle_keys(now=now)
    assert len(again) == 1  # nothing left to fold: the pairs query finds none


def test_a_fold_leaves_other_keys_and_single_ended_rows_alone(project):
    now = timezone.now()
    folded_key, other_key = bulk_secret_keys(project, 2)
    _rows([folded_key, other_key], ["198.51.100.7"], now, folded_before=False)
    KeyUsageIp.objects.create(
        key=folded_key,
        ip="198.51.100.8",
        epoch="alone",
        requests=9,
        last_seen_at=now - timedelta(hours=1),
    )

    flush._fold_ended_epochs({str(folded_key.id)}, now=now)

    assert dict(KeyUsageIp.objects.filter(key=other_key).values_list("epoch", "requests")) == {
        "e1": 1,
        "e2": 2,
        "e3": 3,
        "e4": 4,
    }
    assert sorted(
        KeyUsageIp.objects.filter(key=folded_key).values_list("ip", "epoch", "requests")
    ) == [
        ("198.51.100.7", "e3", 3),
        ("198.51.100.7", "e4", 4),
        ("198.51.100.7", flush.FOLDED, 3),
        ("198.51.100.8", "alone", 9),
    ]


@requires_redis
def test_a_copy_longer_than_the_lock_time_keeps_the_lock_to_its_end(project, monkeypatch):
    """A copy of 15,990 counters and 15,000 IPs to fold took 173 s, past COPY_LOCK_SECONDS:
    another process could begin copying the same counters meanwhile."""
    monkeypatch.setattr(flush, "COPY_LOCK_SECONDS", 1)
    [key] = bulk_secret_keys(project, 1)
    now = timezone.now()
    _rows([key], ["203.0.113.1", "203.0.113.2"], now, folded_before=False)
    add_counts(str(key.id), ip="203.0.113.1", requests=1, refused=0)
    client, held = redis_client(), []

    def slow(real):
        def step(*args, **kwargs):
            result = real(*args, **kwargs)
            time.sleep(0.6)  # the steps of a long copy: together past the lock's time
            held.append(client.get(flush.COPY_LOCK) is not None)
            return result

        return step

    monkeypatch.setattr(flush, "_forget_older_ips", slow(flush._forget_older_ips))
    monkeypatch.setattr(flush, "_fold_ended_epochs", slow(flush._fold_ended_epochs))

    assert flush.flush_usage() == 3  # the hour, the day, the IPs

    assert held == [True, True]
    assert client.get(flush.COPY_LOCK) is None  # released at the end
    assert KeyUsageIp.objects.filter(key=key, epoch=flush.FOLDED).count() == 2


@requires_redis
def test_the_daily_fold_waits_for_a_copy_and_holds_the_lock_itself(project, monkeypatch, caplog):
    """A review: the batch fold locks a key's ended rows in the database's order of IPs and
    a copy's upsert in their text order, so the worker's daily fold and a web process's copy
    could deadlock. The fold takes the copy lock: never both at once."""
    monkeypatch.setattr(flush, "COPY_LOCK_SECONDS", 1)
    [key] = bulk_secret_keys(project, 1)
    now = timezone.now()
    _rows([key], ["9.0.0.1", "10.0.0.2"], now, folded_before=False)
    client = redis_client()
    copying = client.lock(flush.COPY_LOCK, timeout=5)
    assert copying.acquire(blocking=False)
    try:
        flush.fold_idle_keys(now=now)  # waits the lock's time, then leaves it for tomorrow
    finally:
        copying.release()
    assert not KeyUsageIp.objects.filter(key=key, epoch=flush.FOLDED).exists()
    assert "usage fold skipped" in caplog.text
    held = []
    real = flush._fold_ended_epochs

    def watched(*args, **kwargs):
        held.append(client.get(flush.COPY_LOCK) is not None)
        return real(*args, **kwargs)

    monkeypatch.setattr(flush, "_fold_ended_epochs", watched)

    flush.fold_idle_keys(now=now)

    assert held == [True]
    assert KeyUsageIp.objects.filter(key=key, epoch=flush.FOLDED).count() == 2
    assert client.get(flush.COPY_LOCK) is None
