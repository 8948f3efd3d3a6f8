"""What authentication costs per request, against the peers, in one process.

Run with `make bench` (or `.venv/bin/python bench/auth_overhead.py`). Not a
test: it needs PostgreSQL and takes a few minutes. It uses its own database
(BENCH_DATABASE_URL, default postgres://root@127.0.0.1:5432/sigsentry_bench;
the name must contain "bench" because it is emptied), migrates and empties
it, then measures through Django's whole request stack (every production
middleware, DRF, the exception handler, response closing) by calling the WSGI
handler with a prebuilt environ: the same call for every variant.

* Variants are interleaved: each round runs every variant in chunks of CHUNK
  requests, in a shuffled order, so drift on a shared machine hits them all
  alike. The reported time is the median over all requests of a variant.
* Overhead = median(variant) - median(no-auth baseline, the same trivial view).
* CPU: per chunk, the CPU time of this process and of its PostgreSQL backend
  (/proc/PID/schedstat), per request; the median over chunks.
* Queries per request are counted on one request after warm-up.
* The 100,000-keys case compares the overhead with 20 rows in the key table
  and with 100,000 (bulk-inserted rows with random digests), alternating
  CYCLES times; the change is the median of the cycles' changes.
* The lastUsedAt rule: UPDATE statements over a burst of requests with one key.

Results are printed as a table and written to bench/results/latest.json. The
exit status is 1 when a goal (printed at the end) is missed.

This module sets up Django on the bench's database and holds the variants and
goals; `harness` calls and times the requests, `credentials` mints the data,
`cases` runs the cases beside the variants, `report` prints and writes.
"""

from __future__ import annotations

import os
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"

from bench.db import BENCH_DATABASE_URL, database_url, ensure_database  # noqa: E402

os.environ["DATABASE_URL"] = database_url("BENCH_DATABASE_URL", BENCH_DATABASE_URL)
ensure_database(os.environ["DATABASE_URL"])


import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

from bench.cases import failure_paths, hundred_thousand_keys, last_used_burst  # noqa: E402
from bench.credentials import BENCH_ORIGIN, SMALL_TABLE_ROWS, make_credentials  # noqa: E402
from bench.harness import (  # noqa: E402
    CHUNK,
    REQUESTS_PER_ROUND,
    ROUNDS,
    Caller,
    Variant,
    bearer,
    measure,
    median_us,
    per_round_overhead,
    queries_for,
    round_spread_us,
    warm_up,
)
from bench.report import Results, print_report, write_json  # noqa: E402


def main() -> int:
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    call_command("migrate", verbosity=0, interactive=False)
    call_command("flush", verbosity=0, interactive=False)
    creds = make_credentials()
    call = Caller()
    project_header = {"HTTP_X_PROJECT_ID": str(creds.project.id)}

    baseline = Variant("no-auth view (baseline)", "/v1/bench/noauth")
    round_trip = Variant("reference: one SELECT 1, no auth", "/v1/bench/round-trip")
    redis_trip = Variant("reference: one Redis PING, no auth", "/v1/bench/redis-round-trip")
    ours = {
        "secret": Variant("ours: secret key", "/v1/bench/ours", bearer(creds.secret)),
        "guarded": Variant(
            "ours: secret key + rate limit + 4 allowed networks",
            "/v1/bench/ours",
            bearer(creds.guarded),
        ),
        "ip_listed": Variant(
            "ours: secret key + 4 allowed networks", "/v1/bench/ours", bearer(creds.ip_listed)
        ),
        "limited": Variant(
            "ours: secret key + rate limit", "/v1/bench/ours", bearer(creds.limited)
        ),
        "sdk": Variant("ours: SDK key", "/v1/bench/ours", bearer(creds.sdk)),
        "sdk_origins": Variant(
            "ours: SDK key bound to 2 origins + Origin",
            "/v1/bench/ours",
            bearer(creds.sdk_origins),
            {"HTTP_ORIGIN": BENCH_ORIGIN},
        ),
        "org_confined": Variant(
            "ours: org key confined to 2 projects + X-Project-Id",
            "/v1/bench/ours",
            bearer(creds.org_confined),
            project_header,
        ),
        "org": Variant(
            "ours: org key + X-Project-Id", "/v1/bench/ours", bearer(creds.org), project_header
        ),
        "legacy": Variant("ours: legacy key", "/v1/bench/ours", bearer(creds.legacy)),
        "jwt": Variant("ours: JWT", "/v1/bench/ours", bearer(creds.jwt)),
    }
    me = {
        "secret": Variant("/v1/me secret key", "/v1/me", bearer(creds.secret)),
        "sdk": Variant("/v1/me SDK key", "/v1/me", bearer(creds.sdk)),
        "org": Variant(
            "/v1/me org key + X-Project-Id", "/v1/me", bearer(creds.org), project_header
        ),
        "legacy": Variant("/v1/me legacy key", "/v1/me", bearer(creds.legacy)),
        "jwt": Variant("/v1/me JWT", "/v1/me", bearer(creds.jwt)),
    }
    scoped = {
        "secret": Variant(
            "ours, project-scoped view: secret key", "/v1/bench/scoped", bearer(creds.secret)
        ),
        "org": Variant(
            "ours, project-scoped view: org key + X-Project-Id",
            "/v1/bench/scoped",
            bearer(creds.org),
            project_header,
        ),
    }
    peers = {
        "drf_token": Variant(
            "peer: DRF TokenAuthentication", "/v1/bench/drf-token", f"Token {creds.drf_token}"
        ),
        "drf_api_key": Variant(
            "peer: djangorestframework-api-key",
            "/v1/bench/drf-api-key",
            f"Api-Key {creds.drf_api_key}",
        ),
        "knox": Variant("peer: knox TokenAuthentication", "/v1/bench/knox", f"Token {creds.knox}"),
        "simplejwt": Variant(
            "peer: simplejwt JWTAuthentication", "/v1/bench/simplejwt", bearer(creds.simplejwt)
        ),
    }
    variants = [
        baseline,
        round_trip,
        redis_trip,
        *ours.values(),
        *scoped.values(),
        *me.values(),
        *peers.values(),
    ]

    print(
        f"auth overhead: {ROUNDS} rounds x {REQUESTS_PER_ROUND} requests x {len(variants)} "
        f"variants, interleaved in chunks of {CHUNK}; load average {load_before[0]:.2f}",
        flush=True,
    )
    warm_up(call, variants)
    queries = {v.name: queries_for(call, v.environ) for v in variants}
    samples = measure(call, variants, ROUNDS)

    base_us = median_us(samples.wall[baseline.name])
    base_cpu = statistics.median(samples.cpu[baseline.name]) / 1000
    rows = []
    for variant in variants:
        us = median_us(samples.wall[variant.name])
        cpu = statistics.median(samples.cpu[variant.name]) / 1000
        low, high = round_spread_us(samples.wall[variant.name])
        rows.append(
            {
                "variant": variant.name,
                "us": round(us, 1),
                "overhead_us": round(us - base_us, 1),
                "round_medians_us": [round(low, 1), round(high, 1)],
                "cpu_us": round(cpu, 1),
                "cpu_overhead_us": round(cpu - base_cpu, 1),
                "queries": queries[variant.name],
            }
        )
    overhead = {row["variant"]: row["overhead_us"] for row in rows}
    cpu_overhead = {row["variant"]: row["cpu_overhead_us"] for row in rows}

    comparisons = [
        (ours[k], peer)
        for k in ("secret", "guarded", "sdk", "org", "legacy")
        for peer in peers.values()
        if peer is not peers["simplejwt"]
    ] + [(ours["jwt"], peers["simplejwt"])]
    floor = overhead[round_trip.name]
    ratios = {
        f"{mine.name} / {peer.name}": {
            "wall": round(overhead[mine.name] / overhead[peer.name], 2),
            "cpu": round(cpu_overhead[mine.name] / cpu_overhead[peer.name], 2),
            "beyond_round_trip": round(
                (overhead[mine.name] - floor) / (overhead[peer.name] - floor), 2
            ),
        }
        for mine, peer in comparisons
    }

    # Each guardrail alone: the variant with it minus the same key without it.
    checks = {
        "IP allowlist, 4 networks": (ours["ip_listed"], ours["secret"]),
        "rate limit (one Redis round trip)": (ours["limited"], ours["secret"]),
        "IP allowlist and rate limit": (ours["guarded"], ours["secret"]),
        "origin, 2 allowed, Origin sent": (ours["sdk_origins"], ours["sdk"]),
        "project list, 2 projects": (ours["org_confined"], ours["org"]),
    }
    check_costs = {
        label: {
            "wall_us": round(overhead[mine.name] - overhead[without.name], 1),
            "cpu_us": round(cpu_overhead[mine.name] - cpu_overhead[without.name], 1),
        }
        for label, (mine, without) in checks.items()
    }

    failures = failure_paths(call, creds)
    big_table = hundred_thousand_keys(call, creds, baseline)
    burst = last_used_burst(call, creds)
    load_after = os.getloadavg()

    drf, jwt_peer = peers["drf_token"].name, peers["simplejwt"].name
    ratio_goals = [  # (label, ours, against, at most this ratio of its overhead)
        *(
            (f"{label} overhead <= 0.5 x DRF TokenAuthentication", ours[key].name, drf, 0.5)
            for key, label in (
                ("secret", "secret key"),
                ("guarded", "secret key with rate limit and IP list"),
                ("sdk", "SDK key"),
            )
        ),
        (
            "secret key overhead <= 1.5 x one bare SELECT 1 round trip",
            ours["secret"].name,
            round_trip.name,
            1.5,
        ),
        ("JWT overhead (session check included) <= simplejwt", ours["jwt"].name, jwt_peer, 1.0),
    ]
    goals = {}
    for metric, values in (("wall clock", overhead), ("CPU", cpu_overhead)):
        for label, mine, against, most in ratio_goals:
            goals[f"{label} ({metric})"] = values[mine] <= most * values[against]
    # How far the host's noise moves each verdict: the same ratio in each round alone.
    round_overhead = per_round_overhead(samples, baseline.name)
    round_ratios = {
        f"{label} (wall clock)": [
            round(mine_us / against_us, 2)
            for mine_us, against_us in zip(
                round_overhead[mine], round_overhead[against], strict=True
            )
        ]
        for label, mine, against, _most in ratio_goals
    }
    goals |= {
        "1 query per project-key request": all(
            queries[v.name] == 1
            for v in (
                ours["secret"],
                ours["sdk"],
                ours["legacy"],
                scoped["secret"],
                me["secret"],
                me["sdk"],
                me["legacy"],
            )
        ),
        "<= 2 queries per org-key request": all(
            queries[v.name] <= 2 for v in (ours["org"], scoped["org"], me["org"])
        ),
        "0 queries for malformed, bad-checksum and sunset-legacy credentials": all(
            failures[name]["queries"] == 0
            for name in ("malformed header", "garbage", "bad checksum", "legacy after sunset")
        ),
        f"overhead with 100,000 keys within 10 % of {SMALL_TABLE_ROWS} keys": (
            abs(big_table["change"]) <= 0.10
        ),
        "at most one lastUsedAt write per key per minute": burst["updates"] <= 1,
    }

    results = Results(rows, ratios, check_costs, failures, big_table, burst, goals, round_ratios)
    print_report(results, load_before, load_after)
    write_json(started, results, load_before, load_after)
    return 0 if all(goals.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
