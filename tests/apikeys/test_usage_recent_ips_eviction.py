"""A client IP pushed out of the kept recent IPs keeps its count until a copy stores it
(SPEC §4.9: counts are exact; `recentIps` carries each IP's requests).

Each test runs on the store of the run: Redis when REDIS_URL is set (CI's PostgreSQL
suite), this process's memory otherwise (CI's SQLite suite).
"""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from apps.apikeys.gate import counters
from apps.apikeys.gate.counters import RECENT_IPS_KEPT, add_counts
from apps.apikeys.gate.store import local_store
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import KeyUsageIp
from apps.apikeys.usage import flush
from apps.apikeys.usage.answer import key_usage
from apps.apikeys.usage.flush import IPS_STORED, flush_usage
from apps.notifications.tasks import housekeeping
from core.sharedredis import redis_client
from tests.factories import make_key
from tests.orgs.helpers import bearer_client, collection_url, user_client

pytestmark = pytest.mark.django_db

RETURNING = "198.51.100.1"
OTHERS = [f"203.0.113.{number + 10}" for number in range(RECENT_IPS_KEPT)]


def requests_by_ip(api_key) -> dict[str, int]:
    return {row["ip"]: row["requests"] for row in key_usage(api_key, "hour")["recentIps"]}


def stored_requests(api_key, ip: str) -> int:
    return sum(KeyUsageIp.objects.filter(key=api_key, ip=ip).values_list("requests", flat=True))


def counted_ips(key_id: str) -> set[str]:
    """The IPs whose counts the live store holds for the key, kept or pushed out."""
    client = redis_client()
    if client is None:
        return set(local_store().ip_counts(key_id))
    epoch = client.get("ss:u:epoch")
    fields = client.hkeys(f"ss:u:{epoch.decode()}:{key_id}:ip") if epoch else []
    return {f.decode() for f in fields if not f.startswith((b"e:", b"#"))}


def test_recent_ip_count_survives_eviction(settings, project, owner):
    settings.USAGE_FLUSH_SECONDS = 0
    settings.USAGE_BATCH_SECONDS = 0
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)
    client = bearer_client(plaintext)
    client.get("/v1/config", REMOTE_ADDR=RETURNING)
    flush_usage()
    client.get("/v1/config", REMOTE_ADDR=RETURNING)
    for ip in OTHERS:  # the last one pushes RETURNING out of the kept IPs, not yet copied
        client.get("/v1/config", REMOTE_ADDR=ip)
    client.get("/v1/config", REMOTE_ADDR=RETURNING)
    live = requests_by_ip(api_key)
    flush_usage()

    url = f"{collection_url(KeyKind.SECRET, project)}/{api_key.id}/usage"
    body = user_client(owner).get(url).json()
    assert body["total"]["requests"] == 2 + RECENT_IPS_KEPT + 1
    assert next(i for i in body["recentIps"] if i["ip"] == RETURNING)["requests"] == 3
    assert live[RETURNING] == 3
    assert stored_requests(api_key, RETURNING) == 3


@pytest.fixture
def count(time_machine):
    """`count(key_id, ip)`: one request from `ip`, a second after the one before it."""
    time_machine.move_to(timezone.now(), tick=False)

    def one(key_id: str, ip: str) -> None:
        time_machine.shift(1)
        add_counts(key_id, ip=ip, requests=1, refused=0)

    return one


def test_a_pushed_out_ip_is_stored_by_the_next_copy_and_then_forgotten(project, count):
    """Its count waits in the live store for the copy, then leaves it: memory stays bounded."""
    api_key, _plaintext = make_key(KeyKind.SECRET, project=project)
    key_id = str(api_key.id)
    count(key_id, RETURNING)
    count(key_id, RETURNING)
    for ip in OTHERS:
        count(key_id, ip)
    assert RETURNING in counted_ips(key_id)
    assert RETURNING not in requests_by_ip(api_key)  # not among the 5 most recent

    flush_usage()

    assert stored_requests(api_key, RETURNING) == 2
    assert counted_ips(key_id) == set(OTHERS)
    count(key_id, RETURNING)  # back after the copy: a new count of its own
    assert requests_by_ip(api_key)[RETURNING] == 3
    flush_usage()
    assert requests_by_ip(api_key)[RETURNING] == 3
    assert stored_requests(api_key, RETURNING) == 3


def test_a_pushed_out_ip_counted_during_the_copy_is_kept_for_the_next(project, count, monkeypatch):
    """The IP comes back and is pushed out again between the copy's read and its clean: its
    count moved, so the copy leaves it for the next one instead of forgetting it."""
    api_key, _plaintext = make_key(KeyKind.SECRET, project=project)
    key_id = str(api_key.id)
    count(key_id, RETURNING)
    for ip in OTHERS:
        count(key_id, ip)
    real_store, during = flush._store, []

    def store_then_count(*args):
        real_store(*args)
        if not during:
            during.append(True)
            count(key_id, RETURNING)  # back among the kept IPs
            for number in range(RECENT_IPS_KEPT):  # and pushed out again
                count(key_id, f"192.0.2.{number + 1}")

    monkeypatch.setattr(flush, "_store", store_then_count)
    flush_usage()
    assert during
    assert stored_requests(api_key, RETURNING) == 1
    assert RETURNING in counted_ips(key_id)
    assert requests_by_ip(api_key).get(RETURNING) is None  # pushed out: not shown

    flush_usage()
    assert stored_requests(api_key, RETURNING) == 2
    assert RETURNING not in counted_ips(key_id)


def test_pushed_out_ips_beyond_the_cap_are_dropped_oldest_first(project, count, monkeypatch):
    """The bound on memory: at most EVICTED_IPS_KEPT pushed-out IPs wait for a copy per key."""
    monkeypatch.setattr(counters, "EVICTED_IPS_KEPT", 3)
    api_key, _plaintext = make_key(KeyKind.SECRET, project=project)
    key_id = str(api_key.id)
    waiting = [f"192.0.2.{number + 1}" for number in range(5)]
    for ip in [*waiting, *OTHERS]:
        count(key_id, ip)

    assert counted_ips(key_id) == {*waiting[2:], *OTHERS}
    flush_usage()
    assert {ip for ip in waiting if stored_requests(api_key, ip)} == set(waiting[2:])
    assert counted_ips(key_id) == set(OTHERS)


def test_the_database_keeps_only_a_keys_most_recent_ips(project, count):
    """Found by a privacy audit: every client IP of a key was stored for 90 days (an SDK
    key's are its website's visitors: 40 visitors, 40 rows). A key holds IPS_STORED at
    most, the most recently seen, with their counts."""
    api_key, _plaintext = make_key(KeyKind.SECRET, project=project)
    key_id = str(api_key.id)
    ips = [f"203.0.113.{number + 1}" for number in range(IPS_STORED + 5)]
    for number, ip in enumerate(ips):
        count(key_id, ip)
        if number % RECENT_IPS_KEPT == RECENT_IPS_KEPT - 1:
            flush_usage()
    count(key_id, ips[-1])
    flush_usage()

    assert set(KeyUsageIp.objects.filter(key=api_key).values_list("ip", flat=True)) == set(ips[5:])
    assert stored_requests(api_key, ips[-1]) == requests_by_ip(api_key)[ips[-1]] == 2


def stored_ip_rows(api_key, count: int, start: datetime) -> list[KeyUsageIp]:
    """`count` stored IPs of the key, one a second from `start` (the first the oldest)."""
    return KeyUsageIp.objects.bulk_create(
        KeyUsageIp(
            key=api_key,
            ip=str(ipaddress.IPv4Address("10.0.0.0") + number),
            epoch="e",
            requests=1,
            last_seen_at=start + timedelta(seconds=number),
        )
        for number in range(count)
    )


def test_a_key_with_more_stored_ips_than_a_statement_binds_is_trimmed(project):
    """Found by a review: a key of the days before the bound held every IP it had seen; one
    statement named all those past the bound, past PostgreSQL's 65,535 bound parameters,
    and every copy failed."""
    api_key, _plaintext = make_key(KeyKind.SECRET, project=project)
    rows = stored_ip_rows(api_key, 66_000, timezone.now() - timedelta(days=1))

    flush._forget_older_ips({str(api_key.id)})

    kept = set(KeyUsageIp.objects.filter(key=api_key).values_list("ip", flat=True))
    assert kept == {row.ip for row in rows[-IPS_STORED:]}


def test_an_ip_seen_again_while_the_copy_trims_keeps_its_rows(project, monkeypatch):
    """Found by a review: a copy in another process may see an IP again between this copy's
    read of the last-seen times and its delete; that IP is no longer among the oldest."""
    api_key, _plaintext = make_key(KeyKind.SECRET, project=project)
    rows = stored_ip_rows(api_key, IPS_STORED + 2, timezone.now() - timedelta(days=1))
    returning = rows[0].ip
    read, reads = flush.filter_in_chunks, []

    def read_then_seen_again(queryset, field, values):
        found = read(queryset, field, values)
        reads.append(queryset)
        if len(reads) == 2:  # the last-seen times (the first read counts the keys' IPs)
            KeyUsageIp.objects.filter(key=api_key, ip=returning).update(last_seen_at=timezone.now())
        return found

    monkeypatch.setattr(flush, "filter_in_chunks", read_then_seen_again)
    flush._forget_older_ips({str(api_key.id)})

    kept = set(KeyUsageIp.objects.filter(key=api_key).values_list("ip", flat=True))
    assert kept == {returning} | {row.ip for row in rows[-IPS_STORED:]}


@hypothesis_settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@example(steps=[0, 0, *range(1, RECENT_IPS_KEPT + 1), 0])
@given(steps=st.lists(st.sampled_from([*range(RECENT_IPS_KEPT + 4), "copy"]), max_size=60))
def test_every_shown_ip_count_is_exact_whatever_the_order_of_uses_and_copies(project, count, steps):
    cache.clear()  # a key per example: never over the mint throttle
    api_key, _plaintext = make_key(KeyKind.SECRET, project=project)
    key_id = str(api_key.id)
    expected: dict[str, int] = {}
    for step in steps:
        if step == "copy":
            flush_usage()
            continue
        ip = f"192.0.2.{step + 1}"
        count(key_id, ip)
        expected[ip] = expected.get(ip, 0) + 1
    live = requests_by_ip(api_key)
    flush_usage()
    copied = requests_by_ip(api_key)
    assert live == copied == {ip: expected[ip] for ip in copied}
    assert len(counted_ips(key_id)) <= RECENT_IPS_KEPT


def test_ips_that_keep_coming_back_keep_a_bounded_number_of_rows(project, count, time_machine):
    """Found by a soak audit: an IP pushed out and copied counts again under a new epoch, so
    a key used from 24 addresses in turn stored a new row per address at every copy (192,000
    rows took its usage answer from 20 ms to 1.9 s). Rows of epochs that ended over
    FOLD_AFTER ago are added up into one per IP; the counts stay exact."""
    api_key, _plaintext = make_key(KeyKind.SECRET, project=project)
    key_id = str(api_key.id)
    ips = [f"203.0.113.{number + 1}" for number in range(RECENT_IPS_KEPT + 2)]
    rounds, pause = 40, 60
    for _ in range(rounds):  # each round, the two least recent are out at the copy: new epochs
        for ip in ips:
            count(key_id, ip)
        flush_usage()
        time_machine.shift(pause)

    rows = {ip: KeyUsageIp.objects.filter(key=api_key, ip=ip).count() for ip in ips}
    round_seconds = len(ips) + pause
    recent = flush.FOLD_AFTER.total_seconds() / round_seconds
    assert max(rows.values()) <= recent + 3, rows  # the last FOLD_AFTER's, one, the folded
    assert KeyUsageIp.objects.filter(key=api_key, epoch=flush.FOLDED).exists()
    assert {ip: stored_requests(api_key, ip) for ip in ips} == dict.fromkeys(ips, rounds)
    shown = requests_by_ip(api_key)
    assert shown and all(shown[ip] == rounds for ip in shown)


def test_only_epochs_that_ended_long_ago_are_folded_and_a_second_fold_changes_nothing(project):
    """Each of an IP's rows last seen over FOLD_AFTER ago is folded but the newest of those:
    the epoch after a folded one is that old too, so no copy can still write it."""
    api_key, _plaintext = make_key(KeyKind.SECRET, project=project)
    now = timezone.now()
    minutes = {"e1": 40, "e2": 30, "e3": 20, "e4": 15, "e5": 1}
    KeyUsageIp.objects.bulk_create(
        KeyUsageIp(
            key=api_key,
            ip=RETURNING,
            epoch=epoch,
            requests=number + 1,
            last_seen_at=now - timedelta(minutes=ago),
        )
        for number, (epoch, ago) in enumerate(minutes.items())
    )

    for _ in range(2):
        flush._fold_ended_epochs({str(api_key.id)}, now=now)
        rows = dict(KeyUsageIp.objects.filter(key=api_key).values_list("epoch", "requests"))
        assert rows == {flush.FOLDED: 1 + 2 + 3, "e4": 4, "e5": 5}
    folded = KeyUsageIp.objects.get(key=api_key, epoch=flush.FOLDED)
    assert folded.last_seen_at == now - timedelta(minutes=20)


def test_the_daily_housekeeping_folds_the_rows_of_keys_no_copy_touches(project):
    """Found by a second soak: folding ran in the copies of keys in use, so an idle key kept
    its last ten minutes' rows (~20 per IP) until its next use."""
    api_key, _plaintext = make_key(KeyKind.SECRET, project=project)
    now = timezone.now() - timedelta(seconds=5)
    KeyUsageIp.objects.bulk_create(
        KeyUsageIp(
            key=api_key,
            ip=RETURNING,
            epoch=f"e{number}",
            requests=1,
            last_seen_at=now - timedelta(minutes=60 - number),
        )
        for number in range(20)
    )

    housekeeping.call()  # the worker's, once a day

    rows = dict(KeyUsageIp.objects.filter(key=api_key).values_list("epoch", "requests"))
    assert rows == {flush.FOLDED: 19, "e19": 1}
