"""`manage.py flush_usage --resync`: a restore of the database to an earlier point drops the
usage copied since the backup, and a copy forgets a counter once copied, so those counts
were never copied again (a backup/restore audit). The resync copies every counter still in
Redis; a copy keeps the largest count per bucket, so nothing counts twice."""

from __future__ import annotations

import uuid
from io import StringIO

import pytest
from django.core.management import call_command

from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import KeyUsage, KeyUsageIp
from apps.apikeys.usage.flush import flush_usage
from core.sharedredis import redis_client
from tests.apikeys.usage_helpers import requires_redis
from tests.factories import make_key
from tests.orgs.helpers import bearer_client

pytestmark = [pytest.mark.django_db, requires_redis]


def use(plaintext: str, ip: str) -> None:
    assert bearer_client(plaintext).get("/v1/me", HTTP_X_FORWARDED_FOR=ip).status_code == 200


def stored(api_key) -> dict:
    """What the database holds of the key's usage: requests per bucket kind, and per IP."""
    buckets = dict(KeyUsage.objects.filter(key=api_key).values_list("granularity", "requests"))
    ips = dict(KeyUsageIp.objects.filter(key=api_key).values_list("ip", "requests"))
    return {"buckets": buckets, "ips": ips}


def restore_before_the_copy(api_key) -> None:
    """The database restored to before the copy: the copied rows are gone."""
    KeyUsage.objects.filter(key=api_key).delete()
    KeyUsageIp.objects.filter(key=api_key).delete()


def flush_command(*args: str) -> str:
    out = StringIO()
    call_command("flush_usage", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def used_and_copied(project, settings):
    settings.NUM_PROXIES = 1
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)
    for ip in ("198.51.100.1", "198.51.100.2", "198.51.100.1"):
        use(plaintext, ip)
    flush_usage()
    copied = stored(api_key)
    assert copied == {
        "buckets": {"hour": 3, "day": 3},
        "ips": {"198.51.100.1": 2, "198.51.100.2": 1},
    }
    return api_key, copied


def test_resync_copies_again_what_a_restore_dropped_and_never_twice(used_and_copied):
    api_key, copied = used_and_copied
    restore_before_the_copy(api_key)
    flush_command()
    assert stored(api_key) == {"buckets": {}, "ips": {}}  # a plain copy has nothing to copy

    out = flush_command("--resync")

    assert "Copied" in out
    assert stored(api_key) == copied
    flush_command("--resync")
    flush_command()
    assert stored(api_key) == copied


def test_resync_leaves_the_ips_of_an_ended_epoch_alone(used_and_copied):
    """An IP's row of an ended epoch may have been folded into its `folded` row: copied
    again it would count twice. Its hour and day counts come back, keyed by their epoch."""
    api_key, copied = used_and_copied
    redis_client().set("ss:u:epoch", "a-new-server-lifetime")
    restore_before_the_copy(api_key)

    flush_command("--resync")

    assert stored(api_key) == {"buckets": copied["buckets"], "ips": {}}


def test_resync_marks_no_name_that_is_not_a_counter(used_and_copied, caplog):
    api_key, copied = used_and_copied
    client = redis_client()
    epoch, other_key = client.get("ss:u:epoch").decode(), uuid.uuid4()
    for name in (
        f"ss:u:{epoch}:{other_key}:hour:soon",  # copied, its start would not be a moment
        f"ss:u:{epoch}:not-a-key-id:day:1",
        f"ss:u:{epoch}:{other_key}:limits",
    ):
        client.set(name, "x")

    flush_command("--resync")

    assert "foreign counter names" not in caplog.text
    assert stored(api_key) == copied
