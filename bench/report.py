"""The bench's results: printed as a table, and written to bench/results/latest.json."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

from django.db import connection

from bench.credentials import SMALL_TABLE_ROWS
from bench.harness import CHUNK, REQUESTS_PER_ROUND, ROUNDS

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "latest.json"


@dataclass
class Results:
    rows: list[dict]
    ratios: dict[str, dict]
    checks: dict[str, dict]
    rejected: dict[str, dict]
    hundred_thousand_keys: dict
    last_used_burst: dict
    goals: dict[str, bool]
    #: each wall-clock ratio goal's ratio in each round alone
    goal_ratios_per_round: dict[str, list[float]]


def print_report(results: Results, load_before, load_after):
    rows, ratios, failures = results.rows, results.ratios, results.rejected
    big_table, burst, goals = results.hundred_thousand_keys, results.last_used_burst, results.goals
    width = max(len(row["variant"]) for row in rows)
    print()
    print(
        f"{'variant':<{width}}  {'µs/req':>7}  {'overhead':>8}  {'round medians':>15}  "
        f"{'CPU µs':>7}  {'CPU ovh':>7}  queries"
    )
    for row in rows:
        low, high = row["round_medians_us"]
        print(
            f"{row['variant']:<{width}}  {row['us']:>7.0f}  {row['overhead_us']:>8.0f}  "
            f"{low:>7.0f}-{high:<7.0f}  {row['cpu_us']:>7.0f}  {row['cpu_overhead_us']:>7.0f}  "
            f"{row['queries']:>7}"
        )
    print("\nours / peer, overhead ratio: wall clock, CPU, wall clock beyond one round trip")
    for name, value in ratios.items():
        print(
            f"  {value['wall']:>5.2f}  {value['cpu']:>5.2f}  {value['beyond_round_trip']:>5.2f}"
            f"  {name}"
        )
    print("\ncost of each check, µs over the same key without it: wall clock, CPU")
    for name, cost in results.checks.items():
        print(f"  {cost['wall_us']:>6.0f}  {cost['cpu_us']:>6.0f}  {name}")
    print("\nrejected credentials (status, queries, median µs per request):")
    for name, result in failures.items():
        print(f"  {result['status']}  {result['queries']} queries  {result['us']:>5} µs  {name}")
    print(
        f"\n100,000 keys: overhead {big_table[f'overhead_us_{SMALL_TABLE_ROWS}_keys']} µs with "
        f"{SMALL_TABLE_ROWS} keys, "
        f"{big_table['overhead_us_100000_keys']} µs with 100,000; change per cycle "
        f"{', '.join(f'{c:+.1%}' for c in big_table['cycle_changes'])}, "
        f"median {big_table['change']:+.1%}"
    )
    print(
        f"lastUsedAt: {burst['updates']} UPDATE over a burst of {burst['requests']} requests "
        f"with one key (statuses {burst['statuses']})"
    )
    print(
        f"load average: {load_before[0]:.2f} before, {load_after[0]:.2f} after "
        f"({os.cpu_count()} cores)\n"
    )
    for name, ok in goals.items():
        per_round = results.goal_ratios_per_round.get(name)
        spread = ""
        if per_round:
            spread = f"; per round {min(per_round):.2f} to {max(per_round):.2f}"
        print(f"  {'PASS' if ok else 'FAIL'}  {name}{spread}")


def write_json(started, results: Results, load_before, load_after):
    import django as dj
    import rest_framework

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg_version = cursor.fetchone()[0]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "started": started.isoformat(timespec="seconds"),
                "method": (
                    f"WSGI handler call per request, {ROUNDS} rounds x {REQUESTS_PER_ROUND} "
                    f"requests per variant, interleaved in chunks of {CHUNK}; median wall "
                    "clock per request, and median CPU per request of the chunks (this "
                    "process + its PostgreSQL backend, from /proc/PID/schedstat)"
                ),
                "machine": {
                    "cores": os.cpu_count(),
                    "load_average_before": [round(x, 2) for x in load_before],
                    "load_average_after": [round(x, 2) for x in load_after],
                    "python": platform.python_version(),
                    "django": dj.get_version(),
                    "djangorestframework": rest_framework.VERSION,
                    "postgresql": pg_version,
                },
                **asdict(results),
            },
            indent=1,
        )
        + "\n"
    )
    print(f"\nwritten: {RESULTS.relative_to(ROOT)}")
