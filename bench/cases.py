"""The cases measured besides the variants: rejected credentials, a key table of
100,000 rows, and the `lastUsedAt` rule over a burst. Imported after `django.setup()`.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.test.utils import CaptureQueriesContext, override_settings
from psycopg.errors import DeadlockDetected

from apps.apikeys import keyformat
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from bench.credentials import SMALL_TABLE_ROWS, Credentials, filler_keys
from bench.harness import (
    REQUESTS_PER_ROUND,
    ROUNDS,
    WARMUP,
    Caller,
    Variant,
    bearer,
    build_environ,
    measure,
    median_us,
    status_and_queries,
    warm_up,
)

BIG_TABLE_ROWS = 100_000
CYCLES = 4
ROUNDS_PER_PHASE = max(2, ROUNDS // 2)
BURST = 500


def failure_paths(call: Caller, creds: Credentials) -> dict[str, dict[str, int]]:
    """Status, queries and median µs of rejected credentials."""
    good = creds.secret
    bad_checksum = good[:-1] + ("A" if good[-1] != "A" else "B")
    unknown = keyformat.generate(KeyKind.SECRET)
    cases = {
        "malformed header": build_environ("/v1/me", "Basic abc", {}),
        "garbage": build_environ("/v1/me", bearer("not-a-credential"), {}),
        "bad checksum": build_environ("/v1/me", bearer(bad_checksum), {}),
        "unknown key": build_environ("/v1/me", bearer(unknown), {}),
        "revoked key": build_environ("/v1/me", bearer(creds.revoked), {}),
        "revoked key with a rate limit": build_environ("/v1/me", bearer(creds.revoked_limited), {}),
    }
    past = datetime.now(UTC) - timedelta(days=1)
    after_sunset = override_settings(
        LEGACY_KEYS_SUNSET_AT=past, LEGACY_KEYS_DEPRECATED_AT=past - timedelta(days=180)
    )
    cases["legacy after sunset"] = build_environ("/v1/me", bearer(creds.legacy), {})
    # Timed with the failed-credentials limit raised, so each request is the real refusal
    # (its failure counted in its throttle window, one Redis round trip), never a 429.
    raised = settings.THROTTLE_RATES | {"failed_auth_ip": (10**9, 60)}
    results = {}
    for timing in (False, True):  # every status first: the timed ones count failures
        for name, environ in cases.items():
            with after_sunset if name == "legacy after sunset" else contextlib.nullcontext():
                if not timing:
                    status, count = status_and_queries(call, environ)
                    results[name] = {"status": status, "queries": count}
                    continue
                with override_settings(THROTTLE_RATES=raised):
                    warm_up_refusal(call, environ, results[name]["status"])
                    rounds = [timed(call, environ) for _ in range(ROUNDS)]
                results[name]["us"] = round(median_us(rounds))
    return results


def warm_up_refusal(call: Caller, environ: dict, status: int) -> None:
    """Warm the path up, and make sure what is timed is the refusal (not a 429)."""
    for _ in range(WARMUP):
        if call(environ) != status:
            sys.exit(f"{environ['HTTP_AUTHORIZATION']!r}: answered otherwise than {status}")


def timed(call: Caller, environ: dict) -> list[int]:
    """One round of a request's wall-clock times, ns."""
    times = []
    for _ in range(REQUESTS_PER_ROUND):
        start = time.perf_counter_ns()
        call(environ)
        times.append(time.perf_counter_ns() - start)
    return times


def hundred_thousand_keys(call: Caller, creds: Credentials, baseline: Variant) -> dict:
    """Overhead of a secret key with 20 rows in the key table and with 100,000.

    The table alternates between the two states CYCLES times (TRUNCATE and
    re-insert, so the small state really has a small index; VACUUM ANALYZE, so
    autovacuum does not run during a phase), in the order small, big, big,
    small, ... so a steady drift of the machine hits both alike. Each state is
    measured interleaved with the baseline. The change reported is the median
    of the cycles' changes (each cycle's two phases are minutes apart at most);
    the overheads are over all cycles.
    """
    variant = Variant("ours: secret key", "/v1/bench/ours", bearer(creds.secret))
    pair = [baseline, variant]
    phases: dict[str, dict[str, list[list[int]]]] = {
        "small": {v.name: [] for v in pair},
        "big": {v.name: [] for v in pair},
    }
    table = ApiKey._meta.db_table

    def sql(*statements: str) -> None:
        # A fresh cursor each time: requests in between may recycle the connection.
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)

    def set_rows(rows: int) -> None:
        sources = ["bench_small_keys"] + (["bench_filler_keys"] if rows == BIG_TABLE_ROWS else [])
        for attempt in range(1, 4):
            try:
                with transaction.atomic():
                    sql(
                        f"TRUNCATE {table} CASCADE",
                        *(f"INSERT INTO {table} SELECT * FROM {source}" for source in sources),
                    )
                break
            except OperationalError as exc:
                # The usage copy (a background thread of this process, once a minute) inserts
                # counts that reference the key table: it locks the two tables in the order
                # opposite to TRUNCATE ... CASCADE, and PostgreSQL cancels one of the two.
                # Rolled back whole, so the truncate is simply run again.
                if attempt == 3 or not isinstance(exc.__cause__, DeadlockDetected):
                    raise
        sql(f"VACUUM ANALYZE {table}")
        assert ApiKey.objects.count() == rows

    sql(
        "DROP TABLE IF EXISTS bench_small_keys, bench_filler_keys",
        f"CREATE TABLE bench_small_keys AS SELECT * FROM {table}",
    )
    ApiKey.objects.bulk_create(
        filler_keys(creds.organization, creds.project, BIG_TABLE_ROWS - SMALL_TABLE_ROWS),
        batch_size=5000,
    )
    sql(
        f"CREATE TABLE bench_filler_keys AS SELECT * FROM {table}"
        " WHERE id NOT IN (SELECT id FROM bench_small_keys)"
    )
    changes = []
    for cycle in range(CYCLES):
        order = (("small", SMALL_TABLE_ROWS), ("big", BIG_TABLE_ROWS))
        overheads = {}
        for phase, rows in order if cycle % 2 == 0 else order[::-1]:
            set_rows(rows)
            warm_up(call, pair)
            wall = measure(call, pair, ROUNDS_PER_PHASE).wall
            for name, rounds in wall.items():
                phases[phase][name] += rounds
            overheads[phase] = median_us(wall[variant.name]) - median_us(wall[baseline.name])
        changes.append((overheads["big"] - overheads["small"]) / overheads["small"])
    set_rows(SMALL_TABLE_ROWS)
    sql("DROP TABLE bench_small_keys, bench_filler_keys")
    result: dict[str, float] = {}
    for phase, rows in (("small", SMALL_TABLE_ROWS), ("big", BIG_TABLE_ROWS)):
        result[f"overhead_us_{rows}_keys"] = round(
            median_us(phases[phase][variant.name]) - median_us(phases[phase][baseline.name]), 1
        )
    result["cycle_changes"] = [round(change, 3) for change in changes]
    result["change"] = round(statistics.median(changes), 3)
    return result


def last_used_burst(call: Caller, creds: Credentials) -> dict:
    """UPDATEs of the key table over a burst with one never-used key: at most one."""
    environ = build_environ("/v1/bench/ours", bearer(creds.burst), {})
    before = ApiKey.objects.get(digest=keyformat.digest(creds.burst)).last_used_at
    with CaptureQueriesContext(connection) as ctx:
        statuses = {call(environ) for _ in range(BURST)}
    updates = [
        q
        for q in ctx.captured_queries
        if q["sql"].startswith("UPDATE") and "apikeys_apikey" in q["sql"]
    ]
    after = ApiKey.objects.get(digest=keyformat.digest(creds.burst)).last_used_at
    return {
        "requests": BURST,
        "statuses": sorted(statuses),
        "updates": len(updates),
        "last_used_before": before.isoformat() if before else None,
        "last_used_set": after is not None,
    }
