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
"""

from __future__ import annotations

import io
import json
import os
import platform
import random
import secrets
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"

from bench.db import BENCH_DATABASE_URL, database_url, ensure_database  # noqa: E402

os.environ["DATABASE_URL"] = database_url("BENCH_DATABASE_URL", BENCH_DATABASE_URL)
ensure_database(os.environ["DATABASE_URL"])

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "7"))
REQUESTS_PER_ROUND = int(os.environ.get("BENCH_REQUESTS", "300"))
CHUNK = 30
WARMUP = 50
BIG_TABLE_ROWS = 100_000
SMALL_TABLE_ROWS = 20  # the bench's own keys, and filler up to this
CYCLES = 4
ROUNDS_PER_PHASE = max(2, ROUNDS // 2)
FILLER_NAME = "bench filler"
#: An IP list the bench's client (127.0.0.1) is in, last; and an origin the SDK key allows.
BENCH_NETWORKS = ["10.0.0.0/8", "192.0.2.0/24", "2001:db8::/32", "127.0.0.0/8"]
BENCH_ORIGIN = "https://bench.example"
BURST = 500
RESULTS = ROOT / "bench" / "results" / "latest.json"


import django  # noqa: E402

django.setup()

from django.core.handlers.wsgi import WSGIHandler  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import OperationalError, connection, transaction  # noqa: E402
from django.test.utils import CaptureQueriesContext, override_settings  # noqa: E402
from knox.models import AuthToken  # noqa: E402
from psycopg.errors import DeadlockDetected  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402
from rest_framework_api_key.models import APIKey  # noqa: E402
from rest_framework_simplejwt.tokens import AccessToken  # noqa: E402

from apps.accounts.models import User  # noqa: E402
from apps.accounts.services import start_session  # noqa: E402
from apps.apikeys import keyformat  # noqa: E402
from apps.apikeys.keyformat import KeyKind  # noqa: E402
from apps.apikeys.models import ApiKey, KeyScope, KeyType  # noqa: E402
from apps.apikeys.services import mint_key, revoke_key  # noqa: E402
from apps.orgs.models import Membership, Organization  # noqa: E402
from apps.projects.models import Project  # noqa: E402
from core.permissions import ALL_PERMISSIONS, Role  # noqa: E402


@dataclass
class Variant:
    name: str
    path: str
    authorization: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    environ: dict = field(init=False)

    def __post_init__(self) -> None:
        self.environ = build_environ(self.path, self.authorization, self.extra)


def build_environ(path: str, authorization: str | None, extra: dict[str, str]) -> dict:
    environ = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_ACCEPT": "application/json",
        "HTTP_USER_AGENT": "sigsentry-bench",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    if authorization is not None:
        environ["HTTP_AUTHORIZATION"] = authorization
    environ.update(extra)
    return environ


class Caller:
    """One WSGI request, exactly as a WSGI server makes it (body read, response closed)."""

    def __init__(self) -> None:
        self.handler = WSGIHandler()
        self.status = ""

    def _start_response(self, status, headers, exc_info=None):
        self.status = status

    def __call__(self, template: dict) -> int:
        environ = template.copy()
        environ["wsgi.input"] = io.BytesIO(b"")
        result = self.handler(environ, self._start_response)
        b"".join(result)
        result.close()  # request_finished, then the response's closers (lastUsedAt)
        return int(self.status[:3])


# --------------------------------------------------------------------------- data


@dataclass
class Credentials:
    organization: Organization
    project: Project
    secret: str
    guarded: str
    ip_listed: str
    limited: str
    sdk: str
    sdk_origins: str
    org_confined: str
    org: str
    legacy: str
    revoked: str
    burst: str
    jwt: str
    drf_token: str
    drf_api_key: str
    knox: str
    simplejwt: str


def make_legacy_key(project: Project) -> str:
    key = "tb_" + secrets.token_hex(16)
    ApiKey.objects.create(
        organization=project.organization,
        project=project,
        type=KeyType.SECRET,
        scope=KeyScope.PROJECT,
        name="bench legacy",
        prefix=keyformat.display_prefix(key),
        digest=keyformat.digest(key),
        permissions=list(ALL_PERMISSIONS),
        legacy=True,
    )
    return key


def filler_keys(organization: Organization, project: Project, count: int) -> list[ApiKey]:
    """Unusable keys with random digests, to grow the key table."""
    return [
        ApiKey(
            organization=organization,
            project=project,
            type=KeyType.SECRET,
            scope=KeyScope.PROJECT,
            name=FILLER_NAME,
            prefix="ss_secret_" + secrets.token_hex(4),
            digest=secrets.token_hex(32),
            permissions=list(ALL_PERMISSIONS),
        )
        for _ in range(count)
    ]


def make_credentials() -> Credentials:
    user = User.objects.create_user("bench@example.com", secrets.token_urlsafe(16))
    organization = Organization.objects.create(name="Bench Org")
    Membership.objects.create(organization=organization, user=user, role=Role.OWNER)
    project = Project.objects.create(organization=organization, name="Bench Project")
    other_project = Project.objects.create(organization=organization, name="Bench Other")

    def mint(kind: KeyKind, **kwargs) -> str:
        permissions = None if kind is KeyKind.PUBLIC else list(ALL_PERMISSIONS)
        minted = mint_key(
            actor=user,
            kind=kind,
            organization=organization,
            project=None if kind is KeyKind.ORGANIZATION else project,
            name=f"bench {kind.name.lower()}",
            permissions=permissions,
            **kwargs,
        )
        return minted.key

    revoked = mint(KeyKind.SECRET)
    revoke_key(actor=user, api_key=ApiKey.objects.get(digest=keyformat.digest(revoked)))
    creds = Credentials(
        organization=organization,
        project=project,
        secret=mint(KeyKind.SECRET),
        # A rate limit the run never reaches, and an IP list the bench's client is in.
        guarded=mint(
            KeyKind.SECRET,
            rate_limit={"requests": 100_000, "perSeconds": 86_400},
            allowed_ips=BENCH_NETWORKS,
        ),
        # Each guardrail alone, for the cost of each check.
        ip_listed=mint(KeyKind.SECRET, allowed_ips=BENCH_NETWORKS),
        limited=mint(KeyKind.SECRET, rate_limit={"requests": 100_000, "perSeconds": 86_400}),
        sdk=mint(KeyKind.PUBLIC),
        sdk_origins=mint(KeyKind.PUBLIC, allowed_origins=[BENCH_ORIGIN, "https://app.example"]),
        org_confined=mint(
            KeyKind.ORGANIZATION, project_ids=[str(project.id), str(other_project.id)]
        ),
        org=mint(KeyKind.ORGANIZATION),
        legacy=make_legacy_key(project),
        revoked=revoked,
        burst=mint(KeyKind.SECRET),
        jwt=start_session(user).access,
        drf_token=Token.objects.create(user=user).key,
        drf_api_key=APIKey.objects.create_key(name="bench")[1],
        knox=AuthToken.objects.create(user)[1],
        simplejwt=str(AccessToken.for_user(user)),
    )
    missing = SMALL_TABLE_ROWS - ApiKey.objects.count()
    ApiKey.objects.bulk_create(filler_keys(organization, project, missing))
    return creds


# ----------------------------------------------------------------------- measuring


def warm_up(call: Caller, variants: list[Variant]) -> None:
    for variant in variants:
        for _ in range(WARMUP):
            status = call(variant.environ)
            if status != 200:
                sys.exit(f"{variant.name}: warm-up answered {status}, expected 200")


@dataclass
class Samples:
    """What `measure` collects, per variant."""

    #: Wall-clock nanoseconds of each request, grouped by round.
    wall: dict[str, list[list[int]]]
    #: CPU nanoseconds per request of each chunk: this process plus its database backend.
    cpu: dict[str, list[float]]


def backend_pid() -> int | None:
    raw = connection.connection
    return None if raw is None or raw.closed else raw.info.backend_pid


def cpu_ns_of(pid: int) -> int:
    """Time the process has spent on a CPU (first field of /proc/PID/schedstat), in ns."""
    with open(f"/proc/{pid}/schedstat") as stat:
        return int(stat.read().split()[0])


def measure(call: Caller, variants: list[Variant], rounds: int) -> Samples:
    """Run the variants interleaved: each round, CHUNK requests of each in a shuffled order.

    Besides each request's wall-clock time, the CPU time of each chunk is
    recorded for this process and for the PostgreSQL backend serving it, so
    the cost can also be read without the time spent waiting for a wake-up.
    """
    samples = Samples({v.name: [] for v in variants}, {v.name: [] for v in variants})
    clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
    for round_no in range(rounds):
        order = variants[:]
        random.Random(round_no).shuffle(order)
        for variant in order:
            samples.wall[variant.name].append([])
        done = 0
        while done < REQUESTS_PER_ROUND:
            chunk = min(CHUNK, REQUESTS_PER_ROUND - done)
            for variant in order:
                bucket = samples.wall[variant.name][-1]
                environ = variant.environ
                pid = backend_pid()
                cpu_start, db_start = cpu_clock(), cpu_ns_of(pid) if pid else 0
                for _ in range(chunk):
                    start = clock()
                    status = call(environ)
                    bucket.append(clock() - start)
                    if status != 200:
                        sys.exit(f"{variant.name}: answered {status} during measurement")
                cpu_used = cpu_clock() - cpu_start
                if pid and backend_pid() == pid:  # no reconnection in between
                    cpu_used += cpu_ns_of(pid) - db_start
                    samples.cpu[variant.name].append(cpu_used / chunk)
            done += chunk
    return samples


def median_us(rounds: list[list[int]]) -> float:
    return statistics.median(ns for batch in rounds for ns in batch) / 1000


def per_round_overhead(samples: Samples, baseline: str) -> dict[str, list[float]]:
    """Each variant's overhead in each round: its median minus the baseline's, same round."""
    base = [statistics.median(batch) for batch in samples.wall[baseline]]
    return {
        name: [statistics.median(batch) - b for batch, b in zip(rounds, base, strict=True)]
        for name, rounds in samples.wall.items()
    }


def round_spread_us(rounds: list[list[int]]) -> tuple[float, float]:
    medians = [statistics.median(batch) / 1000 for batch in rounds]
    return min(medians), max(medians)


def queries_for(call: Caller, environ: dict) -> int:
    with CaptureQueriesContext(connection) as ctx:
        call(environ)
    return len(ctx.captured_queries)


def status_and_queries(call: Caller, environ: dict) -> tuple[int, int]:
    with CaptureQueriesContext(connection) as ctx:
        status = call(environ)
    return status, len(ctx.captured_queries)


# --------------------------------------------------------------------------- report


def bearer(token: str) -> str:
    return f"Bearer {token}"


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


def failure_paths(call: Caller, creds: Credentials) -> dict[str, dict[str, int]]:
    """Status and queries of rejected credentials (and an org key on a project view)."""
    good = creds.secret
    bad_checksum = good[:-1] + ("A" if good[-1] != "A" else "B")
    unknown = keyformat.generate(KeyKind.SECRET)
    cases = {
        "malformed header": build_environ("/v1/me", "Basic abc", {}),
        "garbage": build_environ("/v1/me", bearer("not-a-credential"), {}),
        "bad checksum": build_environ("/v1/me", bearer(bad_checksum), {}),
        "unknown key": build_environ("/v1/me", bearer(unknown), {}),
        "revoked key": build_environ("/v1/me", bearer(creds.revoked), {}),
    }
    results = {
        name: dict(zip(("status", "queries"), status_and_queries(call, environ), strict=True))
        for name, environ in cases.items()
    }
    past = datetime.now(UTC) - timedelta(days=1)
    with override_settings(
        LEGACY_KEYS_SUNSET_AT=past, LEGACY_KEYS_DEPRECATED_AT=past - timedelta(days=180)
    ):
        status, count = status_and_queries(call, build_environ("/v1/me", bearer(creds.legacy), {}))
    results["legacy after sunset"] = {"status": status, "queries": count}
    return results


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
    print("\nrejected credentials (status, queries):")
    for name, result in failures.items():
        print(f"  {result['status']}  {result['queries']} queries  {name}")
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


if __name__ == "__main__":
    sys.exit(main())
