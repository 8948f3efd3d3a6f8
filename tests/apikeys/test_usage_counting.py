"""Counting key use on the request path, the copy to the database and its lifecycle (SPEC §4.9).

These run in one process through Django's test client: with REDIS_URL set the
counters are in Redis, without it in the process's memory. The two-server
checks are in test_usage_servers.py.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time
import uuid
from datetime import UTC, timedelta
from io import StringIO

import pytest
import redis
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from apps.accounts import services as account_services
from apps.apikeys import keyformat
from apps.apikeys.gate.counters import RECENT_IPS_KEPT, bucket_start, count_args
from apps.apikeys.gate.store import LocalStore
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey, Granularity, KeyUsage, KeyUsageIp
from apps.apikeys.representation import key_json
from apps.apikeys.services import revoke_key
from apps.apikeys.usage import flush
from apps.apikeys.usage.answer import key_usage
from apps.apikeys.usage.flush import flush_usage, prune_usage
from apps.notifications.tasks import housekeeping
from core import failopen
from core.sharedredis import redis_client
from tests.apikeys.usage_helpers import counted_key_ids, requires_redis, set_rate_limit
from tests.factories import PASSWORD, make_key
from tests.orgs.helpers import bearer_client, user_client
from tests.reliability.helpers import closed_port

pytestmark = pytest.mark.django_db

ANALYSIS = {"title": "Checkout errors", "input": "ERROR payment declined"}


def totals(api_key, granularity: str = "hour") -> dict:
    return key_usage(api_key, granularity)["total"]


def reader(project):
    """A secret key that may read analyses but not create them."""
    return make_key(KeyKind.SECRET, project=project, permissions=["analysis:read"])


def use(plaintext: str, **headers) -> int:
    return bearer_client(plaintext).get("/v1/me", **headers).status_code


def create_analysis(plaintext: str) -> int:
    return bearer_client(plaintext).post("/v1/analyses", ANALYSIS, format="json").status_code


# What counts


def test_accepted_and_refused_requests_count_on_their_key(owner, project):
    api_key, plaintext = reader(project)
    revoked, revoked_plaintext = make_key(KeyKind.SECRET, project=project)
    revoke_key(actor=owner, api_key=revoked)
    expired, expired_plaintext = make_key(
        KeyKind.SECRET, project=project, expires_at=timezone.now() + timedelta(seconds=1)
    )
    ApiKey.objects.filter(id=expired.id).update(expires_at=timezone.now())

    assert [use(plaintext), use(plaintext), create_analysis(plaintext)] == [200, 200, 403]
    assert [use(revoked_plaintext), use(expired_plaintext)] == [401, 401]

    assert totals(api_key) == {"requests": 3, "refused": 1}
    assert totals(api_key, "day") == {"requests": 3, "refused": 1}
    assert totals(revoked) == {"requests": 1, "refused": 1}
    assert totals(expired) == {"requests": 1, "refused": 1}


def test_requests_over_the_keys_rate_limit_count_as_refused(project):
    api_key, plaintext = reader(project)
    set_rate_limit(api_key, 2, 3600)

    statuses = [use(plaintext) for _ in range(4)] + [create_analysis(plaintext)]

    assert statuses == [200, 200, 429, 429, 429]
    assert totals(api_key) == {"requests": 5, "refused": 3}


def test_a_refusal_after_an_allowed_rate_limit_check_counts_once(project):
    api_key, plaintext = reader(project)
    set_rate_limit(api_key, 5, 3600)

    assert create_analysis(plaintext) == 403

    assert totals(api_key) == {"requests": 1, "refused": 1}


def test_unknown_keys_are_counted_nowhere(project):
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)
    use(plaintext)
    before = counted_key_ids()
    unknown = [keyformat.generate(kind) for kind in KeyKind]

    assert {use(key) for key in unknown} == {401}
    assert use("ss_secret_not-even-a-key") == 401

    assert counted_key_ids() == before
    assert str(api_key.id) in before
    flush_usage()
    assert set(KeyUsage.objects.values_list("key_id", flat=True)) == {api_key.id}


def test_jwt_requests_count_on_no_key(owner, project):
    before = counted_key_ids()

    assert user_client(owner).get("/v1/me").status_code == 200

    assert counted_key_ids() == before


# Client IPs and last use


def test_a_spoofed_forwarded_for_never_becomes_a_recorded_ip(project, settings):
    settings.NUM_PROXIES = 1
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)

    use(plaintext, HTTP_X_FORWARDED_FOR="6.6.6.6, 198.51.100.7", HTTP_USER_AGENT="ci/1.0")
    use(plaintext, HTTP_X_FORWARDED_FOR="6.6.6.6", REMOTE_ADDR="192.0.2.10")
    settings.NUM_PROXIES = 0
    use(plaintext, HTTP_X_FORWARDED_FOR="6.6.6.6", REMOTE_ADDR="192.0.2.20")

    ips = {ip["ip"]: ip["requests"] for ip in key_usage(api_key, "hour")["recentIps"]}
    assert ips == {"198.51.100.7": 1, "6.6.6.6": 1, "192.0.2.20": 1}
    api_key.refresh_from_db()
    assert api_key.last_used_ip == "198.51.100.7"


def test_a_spoofed_entry_left_of_the_trusted_proxies_is_ignored(project, settings):
    settings.NUM_PROXIES = 1
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)

    use(plaintext, HTTP_X_FORWARDED_FOR="6.6.6.6, 7.7.7.7, 203.0.113.9")

    assert [ip["ip"] for ip in key_usage(api_key, "hour")["recentIps"]] == ["203.0.113.9"]


def test_last_use_records_ip_and_user_agent_cut_to_200_characters(project):
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)
    agent = "<script>alert(1)</script>" + "x" * 300

    use(plaintext, HTTP_USER_AGENT=agent, REMOTE_ADDR="192.0.2.44")

    api_key.refresh_from_db()
    body = key_json(api_key, timezone.now())
    assert body["lastUsedIp"] == "192.0.2.44"
    assert body["lastUsedUserAgent"] == agent[:200]
    assert body["lastUsedAt"] is not None


def wsgi_header(text: str) -> str:
    """`text` sent as UTF-8 bytes, as a WSGI server hands the header over (latin-1)."""
    return text.encode().decode("latin-1")


@pytest.mark.parametrize(
    ("sent", "shown"),
    [
        ("evil\x9b2J\x9d52;c;aGk=\x9c/1.0", "evil\ufffd2J\ufffd52;c;aGk=\ufffd/1.0"),  # C1
        ("ok\t/1.0", "ok\ufffd/1.0"),
        (wsgi_header("app/1.0 \u202eexe.gnp"), "app/1.0 \ufffdexe.gnp"),
        (wsgi_header("Prod\u200bApp/2 \u2028x"), "Prod\ufffdApp/2 \ufffdx"),
        (wsgi_header("Prod/2 \u2029x"), "Prod/2 \ufffdx"),  # a paragraph separator
    ],
)
def test_an_agents_control_and_format_characters_are_shown_as_replaced(project, sent, shown):
    """Anyone can set the agent of a public SDK key: a C1 CSI or OSC (U+009B, U+009D)
    reached the key pages, the API's JSON and webhooks, and drives a terminal that prints
    them; a right-to-left override shown reversed what followed it."""
    api_key, plaintext = make_key(KeyKind.PUBLIC, project=project)

    use(plaintext, HTTP_USER_AGENT=sent)

    api_key.refresh_from_db()
    assert key_json(api_key, timezone.now())["lastUsedUserAgent"] == shown


def test_an_agent_in_utf_8_is_shown_as_written_not_as_latin_1(project):
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)

    use(plaintext, HTTP_USER_AGENT=wsgi_header("Café-Sync/1.0 (東京)"))

    api_key.refresh_from_db()
    assert api_key.last_used_user_agent == "Café-Sync/1.0 (東京)"  # not "CafÃ©-Sync/1.0 (æ±..."


def test_a_sessions_agent_is_kept_readable_too(owner):
    client = user_client(owner)

    client.post(
        "/v1/auth/login",
        {"email": owner.email, "password": PASSWORD},
        format="json",
        HTTP_USER_AGENT=wsgi_header("Café\u202e/1.0\x85"),
    )

    agents = {session.user_agent for session in owner.auth_sessions.all()}
    assert "Café\ufffd/1.0\ufffd" in agents


def test_a_sessions_agent_longer_than_its_column_is_kept_to_its_first_256_characters(owner):
    """A browser's agent has no length limit, its session's column has (256 characters):
    a longer one still logs in, with its beginning kept."""
    agent = "Browser/1.0 " + "x" * 1000

    response = user_client(owner).post(
        "/v1/auth/login",
        {"email": owner.email, "password": PASSWORD},
        format="json",
        HTTP_USER_AGENT=agent,
    )

    assert response.status_code == 200, response.content
    assert agent[:256] in {session.user_agent for session in owner.auth_sessions.all()}


def test_the_last_ip_and_user_agent_go_90_days_after_the_last_use(project):
    """Found by a privacy audit: kept for ever, revoked keys' too, while the usage IPs go
    after 90 days. `lastUsedAt` stays."""
    used, _plaintext = make_key(KeyKind.SECRET, project=project)
    recent, _plaintext = make_key(KeyKind.SECRET, project=project)
    now = timezone.now()
    ApiKey.objects.filter(pk=used.pk).update(
        last_used_at=now - timedelta(days=91), last_used_ip="192.0.2.44", last_used_user_agent="a"
    )
    ApiKey.objects.filter(pk=recent.pk).update(
        last_used_at=now - timedelta(days=89), last_used_ip="192.0.2.45", last_used_user_agent="b"
    )

    assert housekeeping.call()

    used.refresh_from_db()
    recent.refresh_from_db()
    body = key_json(used, timezone.now())
    assert (body["lastUsedIp"], body["lastUsedUserAgent"]) == (None, None)
    assert body["lastUsedAt"] is not None
    assert (recent.last_used_ip, recent.last_used_user_agent) == ("192.0.2.45", "b")


def test_a_refused_request_does_not_move_last_use(owner, project):
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)
    revoke_key(actor=owner, api_key=api_key)

    use(plaintext, HTTP_USER_AGENT="attacker/1.0")

    api_key.refresh_from_db()
    assert (api_key.last_used_at, api_key.last_used_ip, api_key.last_used_user_agent) == (
        None,
        None,
        "",
    )


# The copy to the database


def test_the_answer_is_the_same_before_and_after_the_copy(project, settings):
    settings.NUM_PROXIES = 1
    api_key, plaintext = reader(project)
    for ip in ("198.51.100.1", "198.51.100.2", "198.51.100.1"):
        use(plaintext, HTTP_X_FORWARDED_FOR=ip)
    create_analysis(plaintext)
    before = {g: key_usage(api_key, g) for g in Granularity.values}

    flush_usage()
    copied = {g: key_usage(api_key, g) for g in Granularity.values}
    flush_usage()
    again = {g: key_usage(api_key, g) for g in Granularity.values}

    assert copied == before == again
    assert before["hour"]["total"] == {"requests": 4, "refused": 1}
    assert KeyUsage.objects.filter(key=api_key).count() == 2
    rows = KeyUsageIp.objects.filter(key=api_key)
    assert sorted(rows.values_list("ip", "requests")) == [
        ("127.0.0.1", 1),
        ("198.51.100.1", 2),
        ("198.51.100.2", 1),
    ]


def test_counts_after_a_copy_add_to_it(project):
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)
    use(plaintext)
    flush_usage()
    use(plaintext)
    use(plaintext)

    assert totals(api_key) == {"requests": 3, "refused": 0}
    flush_usage()
    assert totals(api_key) == {"requests": 3, "refused": 0}
    assert KeyUsage.objects.get(key=api_key, granularity="hour").requests == 3


@requires_redis
def test_a_redis_restart_loses_nothing_already_copied(project):
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)
    for _ in range(3):
        use(plaintext)
    flush_usage()

    redis_client().flushdb()  # what a restart without persistence leaves
    use(plaintext)
    use(plaintext)

    assert totals(api_key) == {"requests": 5, "refused": 0}
    flush_usage()
    assert totals(api_key) == {"requests": 5, "refused": 0}
    assert KeyUsage.objects.filter(key=api_key, granularity="hour").count() == 2


@contextlib.contextmanager
def private_redis(directory):
    """A Redis of this test's own that saves its snapshot in `directory`; yields its URL
    and a function that restarts it (it then loads the snapshot, as after a crash)."""
    port = closed_port()
    command = [
        "redis-server",
        *("--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)),
        *("--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no"),
    ]
    url = f"redis://127.0.0.1:{port}/0"
    server = None

    def start() -> None:
        nonlocal server
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(url).ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "the private Redis did not start"
                time.sleep(0.05)

    def restart() -> None:
        with contextlib.suppress(redis.ConnectionError):
            redis.Redis.from_url(url).shutdown(nosave=True)
        server.wait(10)
        start()
        redis_client().ping()  # the pooled connection to the old server is replaced

    start()
    try:
        yield url, restart
    finally:
        server.kill()
        server.wait(10)


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_a_redis_back_from_a_snapshot_starts_a_new_epoch_and_loses_no_count(
    project, settings, tmp_path
):
    """The snapshot holds counters older than the copy: counting on under the old epoch
    would hide new requests behind the larger copied value."""
    with private_redis(tmp_path) as (url, restart):
        settings.REDIS_URL = url
        api_key, plaintext = make_key(KeyKind.SECRET, project=project)
        for _ in range(10):
            use(plaintext)
        flush_usage()
        redis_client().save()
        for _ in range(10):
            use(plaintext)
        flush_usage()
        assert totals(api_key) == {"requests": 20, "refused": 0}

        restart()  # back with the snapshot: 10 counted under the old epoch
        for _ in range(5):
            use(plaintext)

        assert totals(api_key) == {"requests": 25, "refused": 0}
        flush_usage()
        assert totals(api_key) == {"requests": 25, "refused": 0}
        assert KeyUsage.objects.filter(key=api_key, granularity="hour").count() == 2


def test_an_ip_pushed_out_of_the_kept_ips_and_back_keeps_its_count(project, settings, time_machine):
    """Each client IP has its own epoch: counted again from 1 after it was pushed out of
    the kept IPs, it adds to its copied count instead of hiding behind it."""
    settings.NUM_PROXIES = 1
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)
    start = timezone.now()

    def requests_of(ip: str) -> int:
        return {r["ip"]: r["requests"] for r in key_usage(api_key, "hour")["recentIps"]}[ip]

    for _ in range(5):
        use(plaintext, HTTP_X_FORWARDED_FOR="198.51.100.1")
    flush_usage()
    time_machine.move_to(start + timedelta(seconds=1), tick=True)
    for number in range(RECENT_IPS_KEPT):  # the first IP is now the oldest: pushed out
        use(plaintext, HTTP_X_FORWARDED_FOR=f"203.0.113.{number + 1}")
    time_machine.move_to(start + timedelta(seconds=2), tick=True)
    for _ in range(3):
        use(plaintext, HTTP_X_FORWARDED_FOR="198.51.100.1")

    assert requests_of("198.51.100.1") == 8
    flush_usage()
    assert requests_of("198.51.100.1") == 8


@requires_redis
def test_foreign_names_in_the_copy_list_are_dropped_and_never_block_the_copy(project, caplog):
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)
    use(plaintext)
    client = redis_client()
    client.sadd("ss:u:dirty", "garbage", "epoch|not-a-key|hour|0", b"\xff|\xfe")

    flush_usage()

    assert KeyUsage.objects.get(key=api_key, granularity="hour").requests == 1
    assert client.smembers("ss:u:dirty") == set()
    assert "3 foreign counter names ignored" in caplog.text


@requires_redis
def test_one_copy_at_a_time_across_processes(project):
    """A fairness audit: the worker's and every web process's copies of the same counters
    ran at once. A copy waiting or skipping while another holds the lock copies nothing
    twice, and what it skipped is copied by the next one."""
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)
    use(plaintext)
    other = redis_client().lock(flush.COPY_LOCK, timeout=30)
    assert other.acquire(blocking=False)  # another process is copying

    try:
        assert flush_usage(wait=False) is None  # the timers and the worker skip
    finally:
        other.release()

    assert not KeyUsage.objects.filter(key=api_key).exists()
    assert flush_usage() == 3  # hour, day and the IP, once the lock is free
    assert KeyUsage.objects.get(key=api_key, granularity="hour").requests == 1
    assert redis_client().get(flush.COPY_LOCK) is None  # released


@requires_redis
def test_the_command_fails_when_another_copy_holds_the_lock_for_its_whole_time(
    project, monkeypatch
):
    """A review: it printed "Copied None usage counter(s)" and succeeded, before a Redis
    restart that then lost the counts."""
    _api_key, plaintext = make_key(KeyKind.SECRET, project=project)
    use(plaintext)
    monkeypatch.setattr(flush, "COPY_LOCK_SECONDS", 1)
    other = redis_client().lock(flush.COPY_LOCK, timeout=30)
    assert other.acquire(blocking=False)
    try:
        with pytest.raises(CommandError, match="nothing was copied"):
            call_command("flush_usage", stdout=StringIO())
    finally:
        other.release()


@requires_redis
def test_counts_waiting_in_the_previous_epoch_show_before_and_after_the_copy(project, settings):
    """A Redis restarted from a snapshot, or a replica promoted in its place, starts a new
    epoch: what the old one counted and no copy has stored yet still shows."""
    settings.NUM_PROXIES = 1
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)
    for _ in range(5):
        use(plaintext, HTTP_X_FORWARDED_FOR="198.51.100.20")
    redis_client().set("ss:u:run", "another-server-lifetime")  # what a new server shows
    use(plaintext, HTTP_X_FORWARDED_FOR="198.51.100.20")

    for _copy in ("before", "after"):
        usage = key_usage(api_key, "hour")
        assert usage["total"]["requests"] == 6, _copy
        assert [ip["requests"] for ip in usage["recentIps"]] == [6], _copy
        assert totals(api_key, "day")["requests"] == 6, _copy
        flush_usage()
    assert (
        sum(
            KeyUsage.objects.filter(key=api_key, granularity="hour").values_list(
                "requests", flat=True
            )
        )
        == 6
    )


@requires_redis
def test_ip_counts_that_expired_in_redis_start_again_without_losing_the_copy(project, settings):
    """A key used every few days: its IP counters expire in between, then count from 1 again."""
    settings.NUM_PROXIES = 1
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)
    use(plaintext, HTTP_X_FORWARDED_FOR="198.51.100.9")
    use(plaintext, HTTP_X_FORWARDED_FOR="198.51.100.9")
    flush_usage()
    client = redis_client()
    epoch = client.get("ss:u:epoch").decode()
    client.delete(f"ss:u:{epoch}:{api_key.id}:ip", f"ss:u:{epoch}:{api_key.id}:seen")

    use(plaintext, HTTP_X_FORWARDED_FOR="198.51.100.9")
    (live,) = key_usage(api_key, "hour")["recentIps"]
    flush_usage()
    (copied,) = key_usage(api_key, "hour")["recentIps"]

    assert live["requests"] == copied["requests"] == 3


@requires_redis
def test_a_copy_sends_this_processs_unsent_counts_first(transactional_db, project, settings):
    """On a quiet process the copy runs at once, before the batch's own send: it sends
    the batch itself, so the request is copied without waiting for the worker."""
    settings.USAGE_BATCH_SECONDS = 3600  # the batch's own send never runs in this test
    settings.USAGE_FLUSH_SECONDS = 1
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)
    try:
        use(plaintext)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not KeyUsage.objects.filter(key=api_key).exists():
            time.sleep(0.1)
        assert KeyUsage.objects.get(key=api_key, granularity="hour").requests == 1
    finally:
        settings.USAGE_FLUSH_SECONDS = 0
        time.sleep(0.2)  # let the copy thread finish before the tables are emptied


def test_the_copy_runs_within_the_flush_interval_after_the_last_use(
    transactional_db, project, settings
):
    """Not only on the next request: a burst that ends a quiet process's traffic is copied."""
    settings.USAGE_FLUSH_SECONDS = 1
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)

    def copied_requests(expected: int) -> int | None:
        deadline = time.monotonic() + 5
        found = None
        while time.monotonic() < deadline:
            found = (
                KeyUsage.objects.filter(key=api_key, granularity="hour")
                .values_list("requests", flat=True)
                .first()
            )
            if found == expected:
                break
            time.sleep(0.1)
        return found

    use(plaintext)
    assert copied_requests(1) == 1
    use(plaintext)  # within the interval of the first copy; no request follows
    assert copied_requests(2) == 2
    settings.USAGE_FLUSH_SECONDS = 0
    time.sleep(0.2)  # let the copy thread finish before the tables are emptied


def test_flush_usage_command_copies_and_prunes(project):
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)
    use(plaintext)
    use(plaintext)
    old = bucket_start(timezone.now(), "hour") - timedelta(hours=60)
    KeyUsage.objects.create(key=api_key, granularity="hour", start=old, epoch="e", requests=9)
    out = StringIO()

    call_command("flush_usage", stdout=out)

    assert KeyUsage.objects.get(key=api_key, granularity="hour").requests == 2
    assert KeyUsage.objects.get(key=api_key, granularity="day").requests == 2
    assert not KeyUsage.objects.filter(start=old).exists()
    assert "pruned 1 old usage row" in out.getvalue()
    call_command("flush_usage", stdout=StringIO())
    assert KeyUsage.objects.get(key=api_key, granularity="day").requests == 2


def test_flush_usage_command_fails_loudly_when_redis_is_unreachable(settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port()}/0"

    with pytest.raises(CommandError, match="unreachable"):
        call_command("flush_usage", stdout=StringIO())


# Lifecycle


def test_prune_keeps_48_hours_of_hourly_and_90_days_of_daily_usage(owner, project):
    api_key, _ = make_key(KeyKind.SECRET, project=project)
    revoke_key(actor=owner, api_key=api_key)
    now = timezone.now()
    hour, day = bucket_start(now, "hour"), bucket_start(now, "day")

    def row(granularity, start):
        return KeyUsage.objects.create(
            key=api_key, granularity=granularity, start=start, epoch="e", requests=1
        )

    kept = [
        row("hour", hour),
        row("hour", hour - timedelta(hours=47)),
        row("hour", hour - timedelta(hours=48)),
        row("day", day),
        row("day", day - timedelta(days=90)),
    ]
    gone = [row("hour", hour - timedelta(hours=49)), row("day", day - timedelta(days=91))]
    recent_ip = KeyUsageIp.objects.create(
        key=api_key, ip="192.0.2.1", epoch="e", requests=1, last_seen_at=now - timedelta(days=89)
    )
    KeyUsageIp.objects.create(
        key=api_key, ip="192.0.2.2", epoch="e", requests=1, last_seen_at=now - timedelta(days=91)
    )

    assert prune_usage(now) == 3

    assert set(KeyUsage.objects.filter(key=api_key)) == set(kept)
    assert not KeyUsage.objects.filter(id__in=[r.id for r in gone]).exists()
    assert list(KeyUsageIp.objects.filter(key=api_key)) == [recent_ip]


def test_a_process_drops_its_counters_of_closed_periods_once_they_are_copied(monkeypatch):
    """Without REDIS_URL each process keeps its own counters: those of periods over a day
    old that were copied go at the daily prune, so the process's memory stays bounded."""
    store, now = LocalStore(), timezone.now()
    monkeypatch.setattr(flush, "local_store", lambda: store)  # this process's, alone
    copied, pending = str(uuid.uuid4()), str(uuid.uuid4())
    old, recent = (now - timedelta(days=2), now)

    def count(key_id: str, moment) -> list[tuple[str, str, str]]:
        store.count(
            count_args(key_id, ip=None, requests=1, refused=0, now=moment.timestamp(), ip_count=0)
        )
        return [(key_id, g, str(int(bucket_start(moment, g).timestamp()))) for g in ("hour", "day")]

    copied_old, copied_recent = count(copied, old), count(copied, recent)
    with store.pending_copy():
        pass  # stored
    pending_old = count(pending, old)  # not copied yet

    prune_usage(now)

    held = store.bucket_counts([*copied_old, *copied_recent, *pending_old])
    assert set(held) == {*copied_recent, *pending_old}


def test_a_revoked_key_keeps_its_history(owner, project):
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)
    use(plaintext)
    flush_usage()

    revoke_key(actor=owner, api_key=api_key)
    prune_usage()

    assert totals(api_key) == {"requests": 1, "refused": 0}
    assert KeyUsage.objects.filter(key=api_key).count() == 2


# Redis down


def test_with_redis_unreachable_requests_are_served_never_refused_and_a_warning_logged(
    project, settings, caplog
):
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port()}/0"
    api_key, plaintext = reader(project)
    set_rate_limit(api_key, 1, 3600)
    failopen.end_rest()  # minting met the outage too (its throttle): the process rests
    caplog.clear()

    started = time.monotonic()
    statuses = [use(plaintext) for _ in range(3)]
    elapsed = time.monotonic() - started

    assert statuses == [200, 200, 200]
    assert elapsed < 3 * 0.25 + 1
    # One try, then the process rests from Redis (core.failopen): the others skip it.
    assert caplog.text.count("usage store unavailable") == 1
    caplog.clear()
    failopen.end_rest()
    assert create_analysis(plaintext) == 403
    assert caplog.text.count("usage store unavailable") == 1, "one try per request"


class SilentRedis:
    """Accepts connections and never answers: a Redis that hangs."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self.server.getsockname()[1]}/0"
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.connections.append(self.server.accept()[0])

    def close(self) -> None:
        self.server.close()
        for connection in self.connections:
            connection.close()


def test_a_refused_key_waits_for_a_hanging_redis_once_not_at_each_step(project, settings):
    """A revoked key with a rate limit meets Redis twice (the failed-credential throttle,
    then its window for the X-RateLimit-* headers): after the first 250 ms wait the
    second step is skipped, so no request waits longer than that for Redis."""
    silent = SilentRedis()
    try:
        settings.REDIS_URL = silent.url
        settings.CACHES = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": silent.url,
                "OPTIONS": {"socket_connect_timeout": 0.25, "socket_timeout": 0.25},
            }
        }
        api_key, plaintext = make_key(KeyKind.SECRET, project=project)
        set_rate_limit(api_key, 5, 60)
        ApiKey.objects.filter(pk=api_key.pk).update(revoked_at=timezone.now())
        before = len(silent.connections)  # minting met the hanging Redis too (its throttle)
        failopen.end_rest()  # and the process rests from it since (core.failopen)

        assert use(plaintext) == 401
        assert len(silent.connections) - before == 1, "one step waited, the other skipped"
        assert use(plaintext) == 401  # within the process's rest: not tried again
        assert len(silent.connections) - before == 1
        failopen.end_rest()
        assert use(plaintext) == 401  # after it, the next request tries Redis again
        assert len(silent.connections) - before == 2
    finally:
        silent.close()


def test_a_usage_read_waits_for_a_hanging_redis_once_not_at_each_read(project, settings):
    api_key, _plaintext = make_key(KeyKind.SECRET, project=project)
    silent = SilentRedis()
    try:
        settings.REDIS_URL = silent.url
        usage = key_usage(api_key, "hour")
        assert usage["total"] == {"requests": 0, "refused": 0}  # copied counts only
        assert len(silent.connections) == 1, "the IP read skipped after the counts' wait"
    finally:
        silent.close()


def test_without_redis_a_copy_that_failed_is_made_again(project, settings, monkeypatch):
    settings.REDIS_URL = ""
    api_key, plaintext = reader(project)
    flush_usage()  # earlier tests' counters out of the way
    for _ in range(3):
        assert use(plaintext) == 200
    store = flush._store

    def database_down(*args, **kwargs):
        raise DatabaseError("connection lost")

    monkeypatch.setattr(flush, "_store", database_down)
    with pytest.raises(DatabaseError):
        flush_usage()
    monkeypatch.setattr(flush, "_store", store)

    assert flush_usage() >= 1  # the counters the failed copy held are copied now
    stored = KeyUsage.objects.filter(key=api_key, granularity=Granularity.HOUR)
    assert sum(stored.values_list("requests", flat=True)) == 3


# Random sequences


ACTIONS = st.lists(
    st.sampled_from(["valid", "denied", "revoked", "limited", "unknown", "copy"]),
    min_size=1,
    max_size=25,
)


@hypothesis_settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(actions=ACTIONS)
def test_random_sequences_of_requests_are_counted_exactly(owner, project, actions):
    good, good_plaintext = reader(project)
    revoked, revoked_plaintext = make_key(KeyKind.SECRET, project=project)
    revoke_key(actor=owner, api_key=revoked)
    limited, limited_plaintext = make_key(KeyKind.PUBLIC, project=project)
    set_rate_limit(limited, 3, 3600)
    ours = {str(k.id) for k in (good, revoked, limited)}
    before = counted_key_ids()
    expected = {k: [0, 0] for k in ours}

    for action in actions:
        if action == "valid":
            assert use(good_plaintext) == 200
            expected[str(good.id)][0] += 1
        elif action == "denied":
            assert create_analysis(good_plaintext) == 403
            expected[str(good.id)][0] += 1
            expected[str(good.id)][1] += 1
        elif action == "revoked":
            assert use(revoked_plaintext) in (401, 429)
            expected[str(revoked.id)][0] += 1
            expected[str(revoked.id)][1] += 1
        elif action == "limited":
            counts = expected[str(limited.id)]
            assert use(limited_plaintext) == (200 if counts[0] < 3 else 429)
            counts[1] += counts[0] >= 3
            counts[0] += 1
        elif action == "unknown":
            assert use(keyformat.generate(KeyKind.SECRET)) in (401, 429)
        else:
            answers = [totals(k) for k in (good, revoked, limited)]
            flush_usage()
            assert [totals(k) for k in (good, revoked, limited)] == answers

    for api_key in (good, revoked, limited):
        for granularity in Granularity.values:
            assert totals(api_key, granularity) == dict(
                zip(("requests", "refused"), expected[str(api_key.id)], strict=True)
            )
    counted = {k for k, (requests, _) in expected.items() if requests}
    assert counted_key_ids() - before == counted, "unknown keys are counted nowhere"


def test_buckets_are_utc_hours(project):
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)
    use(plaintext)

    (bucket,) = [b for b in key_usage(api_key, "hour")["series"] if b["requests"]]

    assert bucket["start"] == timezone.now().astimezone(UTC).replace(
        minute=0, second=0, microsecond=0
    )


def test_a_credential_sent_as_the_agent_is_never_stored(project, owner):
    """The agent is stored (the key's last use, a session, the audit log) and shown: a key
    or token a client put there by mistake was written as it came (a log audit)."""
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)
    _other, secret = make_key(KeyKind.SECRET, project=project)
    token = account_services.start_session(owner).access

    use(plaintext, HTTP_USER_AGENT=f"sync/1.0 {secret} {token}")
    user_client(owner).post(
        "/v1/auth/login",
        {"email": owner.email, "password": PASSWORD},
        format="json",
        HTTP_USER_AGENT=f"cli {secret}",
    )

    api_key.refresh_from_db()
    stored = [api_key.last_used_user_agent, *(s.user_agent for s in owner.auth_sessions.all())]
    assert stored[0].startswith("sync/1.0 ")
    assert not [agent for agent in stored if secret in agent or token in agent]
    assert not [agent for agent in stored if secret[:20] in agent or token.split(".")[1] in agent]


def test_an_agent_cut_inside_a_character_is_still_read_as_utf_8(project):
    """Only the first 1,024 bytes are read: a cut inside a character made the whole agent
    read as latin-1 ("CafÃ©"), found by a mutation audit."""
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)

    use(plaintext, HTTP_USER_AGENT=wsgi_header("Café/1.0 " + "x" * 1013 + "é"))

    api_key.refresh_from_db()
    assert api_key.last_used_user_agent == ("Café/1.0 " + "x" * 1013)[:200]
