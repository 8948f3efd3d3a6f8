#!/usr/bin/env bash
# Load at scale: 4 gunicorn workers behind PgBouncer (transaction mode), a mixed key workload.
# Run with `make load-scale` (about 2 minutes). Loopback only; bounded in time.
#
# * Database: LOAD_SCALE_DATABASE_URL (default postgres://root@127.0.0.1:5432/sigsentry_bench_scale;
#   the name must contain "bench": it is emptied), prepared by bench/load_fixtures.py, which
#   mints the credentials into a mode-600 temporary file (never printed).
# * PgBouncer: a private one (.ci/pgbouncer: pool_mode = transaction, default_pool_size = 10)
#   in front of that PostgreSQL; the server connects through it with the default settings.
# * Server: gunicorn sigsentry.wsgi (bench settings), LOAD_WORKERS sync workers (default 4),
#   METRICS_TOKEN set (so the metrics cost is in the figures), Redis (LOAD_REDIS_URL, default db 13,
#   emptied): usage is counted there, and the keys' usage must equal the requests sent with them.
# * Runs: the no-auth view for LOAD_BASELINE (default 10s), then for LOAD_DURATION (default
#   60s) four wrk clients at once, LOAD_CONNECTIONS connections each (default 3): a valid secret
#   key on GET /v1/me (200), a revoked key and a garbage key on GET /v1/me (401, then 429 once
#   the client's failures pass the failed_auth_ip limit), and the valid key on GET
#   /v1/organizations, which API keys may not use (403 KEY_MANAGEMENT_FORBIDDEN).
# * While the mixed run goes, PgBouncer's SHOW POOLS is sampled every second, and the CPU time
#   the gunicorn workers and PgBouncer use is read from /proc: CPU per request gives requests
#   per second per core, a sizing figure that holds even when other work shares the machine.
# * Checks (exit status 1 if one fails): every valid request 200, every refused one 403, the
#   revoked and garbage ones only 401 or 429, no 5xx, no socket error, and the server's own
#   request count (/metrics, added up over the workers) equal to the answers wrk received
#   (plus at most the requests still in flight when wrk stopped).
set -euo pipefail

cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
DURATION="${LOAD_DURATION:-60s}"
BASELINE="${LOAD_BASELINE:-10s}"
CONNECTIONS="${LOAD_CONNECTIONS:-3}"
WORKERS="${LOAD_WORKERS:-4}"
DATABASE_URL="${LOAD_SCALE_DATABASE_URL:-postgres://root@127.0.0.1:5432/sigsentry_bench_scale}"
RESULTS=bench/results/load-pgbouncer-latest.json

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 2; }
command -v pgbouncer >/dev/null || { echo "pgbouncer is missing: apt-get install -y pgbouncer" >&2; exit 2; }

WORKDIR="$(mktemp -d)"
chmod 700 "$WORKDIR"
BOUNCER_DIR="$(mktemp -d)"
SERVER_PID=""
SAMPLER_PID=""
cleanup() {
  for pid in "$SAMPLER_PID" "$SERVER_PID"; do
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      wait "$pid" 2>/dev/null || true
    fi
  done
  bash .ci/pgbouncer stop "$BOUNCER_DIR" || true
  rm -rf "$WORKDIR" "$BOUNCER_DIR"
}
trap cleanup EXIT

free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

SECRET_KEY="$("$PY" -c 'import secrets; print(secrets.token_urlsafe(50))')"
METRICS_TOKEN="$("$PY" -c 'import secrets; print(secrets.token_urlsafe(32))')"
export SECRET_KEY
CREDENTIALS="$WORKDIR/credentials"
LOAD_DATABASE_URL="$DATABASE_URL" "$PY" bench/load_fixtures.py "$CREDENTIALS"

read -r DB_HOST DB_PORT DB_USER DB_NAME < <("$PY" - "$DATABASE_URL" <<'EOF'
import sys
from urllib.parse import urlsplit
url = urlsplit(sys.argv[1])
print(url.hostname or "127.0.0.1", url.port or 5432, url.username or "root", url.path.lstrip("/"))
EOF
)
BOUNCER_PORT="$(free_port)"
bash .ci/pgbouncer start "$BOUNCER_DIR" "$BOUNCER_PORT" "$DB_HOST" "$DB_PORT"

PORT="$(free_port)"
URL="http://127.0.0.1:$PORT"
LOAD_REDIS="${LOAD_REDIS_URL:-redis://127.0.0.1:6379/13}"
redis-cli -u "$LOAD_REDIS" flushdb >/dev/null
env DJANGO_SETTINGS_MODULE=bench.settings DEBUG=false HTTPS_ONLY=false \
  DATABASE_URL="postgres://$DB_USER@127.0.0.1:$BOUNCER_PORT/$DB_NAME" DATABASE_POOLER= \
  REDIS_URL="$LOAD_REDIS" METRICS_TOKEN="$METRICS_TOKEN" \
  "$PY" -m gunicorn sigsentry.wsgi:application --bind "127.0.0.1:$PORT" --workers "$WORKERS" \
  --timeout 30 >"$WORKDIR/gunicorn.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 150); do
  if curl -fsS -o /dev/null "$URL/readyz" 2>/dev/null; then break; fi
  kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$WORKDIR/gunicorn.log" >&2; exit 1; }
  sleep 0.2
done
curl -fsS -o /dev/null "$URL/readyz"

metrics_total() {  # the server's count of answered /v1/me and /v1/organizations requests
  curl -fsS -H "Authorization: Bearer $METRICS_TOKEN" "$URL/metrics" | "$PY" -c '
import sys
from prometheus_client.parser import text_string_to_metric_families
print(int(sum(
    s.value for f in text_string_to_metric_families(sys.stdin.read()) for s in f.samples
    if s.name == "sigsentry_http_requests_total" and s.labels["route"] in ("v1/me", "v1/organizations")
)))'
}

usage_total() {  # requests counted on the load's two keys (valid, revoked), as the usage API says
  DJANGO_SETTINGS_MODULE=bench.settings DATABASE_URL="$DATABASE_URL" REDIS_URL="$LOAD_REDIS" \
    "$PY" bench/usage_total.py "$CREDENTIALS"
}

cpu_seconds() {  # cpu_seconds <pid>...: user + system CPU time those processes have used
  "$PY" - "$@" <<'EOF2'
import os, sys
tick = os.sysconf("SC_CLK_TCK")
total = 0
for pid in sys.argv[1:]:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    total += int(fields[11]) + int(fields[12])  # utime, stime
print(f"{total / tick:.2f}")
EOF2
}

wrk_run() {  # wrk_run <connections> <duration> <path> <mode>  → the RESULT line
  wrk -t1 -c"$1" -d"$2" --latency -s bench/wrk.lua "$URL$3" -- "$4" "$CREDENTIALS" |
    sed -n 's/^RESULT //p'
}

STARTED=$SECONDS
echo "gunicorn: $WORKERS workers behind PgBouncer (transaction mode); $(nproc) cores"
# Warm every worker (imports, database connection) before measuring or counting.
wrk_run $((CONNECTIONS * 4)) 2s /v1/me bearer:valid >/dev/null
wrk_run $((CONNECTIONS * 4)) "$BASELINE" /v1/bench/noauth none >"$WORKDIR/noauth"
sleep 2  # the warm-up's usage batches reach Redis
BEFORE="$(metrics_total)"
USAGE_BEFORE="$(usage_total)"

(
  while true; do
    psql -h 127.0.0.1 -p "$BOUNCER_PORT" -U "$DB_USER" -d pgbouncer -AF'|' -c "SHOW POOLS" \
      2>/dev/null | grep -E "^(database|$DB_NAME)\|" || true
    sleep 1
  done
) >"$WORKDIR/pools" &
SAMPLER_PID=$!
WEB_PIDS=$(pgrep -P "$SERVER_PID" | tr '\n' ' ')
BOUNCER_PID=$(cat "$BOUNCER_DIR/pgbouncer.pid")
# shellcheck disable=SC2086
WEB_CPU_BEFORE=$(cpu_seconds $WEB_PIDS)
BOUNCER_CPU_BEFORE=$(cpu_seconds "$BOUNCER_PID")
CLIENTS=()
for run in "valid /v1/me bearer:valid" "revoked /v1/me bearer:revoked" \
  "garbage /v1/me bearer:garbage" "refused /v1/organizations bearer:valid"; do
  read -r name path mode <<<"$run"
  wrk_run "$CONNECTIONS" "$DURATION" "$path" "$mode" >"$WORKDIR/$name" &
  CLIENTS+=($!)
done
wait "${CLIENTS[@]}"
# shellcheck disable=SC2086
WEB_CPU_AFTER=$(cpu_seconds $WEB_PIDS)
BOUNCER_CPU_AFTER=$(cpu_seconds "$BOUNCER_PID")
kill "$SAMPLER_PID"
wait "$SAMPLER_PID" 2>/dev/null || true
SAMPLER_PID=""
sleep 1
AFTER="$(metrics_total)"
sleep 2  # the last usage batches reach Redis (USAGE_BATCH_SECONDS=1)
USAGE_AFTER="$(usage_total)"
ELAPSED=$((SECONDS - STARTED))

"$PY" - "$WORKDIR" "$((AFTER - BEFORE))" "$((CONNECTIONS * 4))" "$ELAPSED" "$RESULTS" \
  "$WORKERS" "$DURATION" "$CONNECTIONS" "$WEB_CPU_BEFORE" "$WEB_CPU_AFTER" \
  "$BOUNCER_CPU_BEFORE" "$BOUNCER_CPU_AFTER" "$((USAGE_AFTER - USAGE_BEFORE))" <<'EOF'
import json, os, sys
from datetime import UTC, datetime
from pathlib import Path

workdir, counted, in_flight, elapsed, out = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
workers, duration, connections = sys.argv[6], sys.argv[7], sys.argv[8]
web_cpu = round(float(sys.argv[10]) - float(sys.argv[9]), 2)
bouncer_cpu = round(float(sys.argv[12]) - float(sys.argv[11]), 2)
usage_counted = int(sys.argv[13])
runs = {name: json.loads((workdir / name).read_text()) for name in ("noauth", "valid", "revoked", "garbage", "refused")}
expected = {"valid": {"200"}, "revoked": {"401", "429"}, "garbage": {"401", "429"}, "refused": {"403"}}
mixed = {name: runs[name] for name in expected}
answered = sum(r["requests"] for r in mixed.values())

lines = (workdir / "pools").read_text().splitlines()
header = next((line.split("|") for line in lines if line.startswith("database|")), [])
samples = [dict(zip(header, line.split("|"))) for line in lines if line and not line.startswith("database|")]
def peak(*columns):
    return max((sum(int(s[c]) for c in columns) for s in samples), default=0)
pools = {
    "samples": len(samples),
    "max_server_connections_active": peak("sv_active"),
    "max_server_connections_open": peak("sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login"),
    "max_clients_active": peak("cl_active"),
    "max_clients_waiting": peak("cl_waiting"),
}

print(f"\n{'run':<44} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}  statuses")
labels = {
    "noauth": "no-auth view (baseline, same server)",
    "valid": "GET /v1/me, valid secret key",
    "revoked": "GET /v1/me, revoked key",
    "garbage": "GET /v1/me, garbage key",
    "refused": "GET /v1/organizations, API key (refused)",
}
for name, r in runs.items():
    print(f"{labels[name]:<44} {r['rps']:>8.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f}  {r['statuses']}")
total_rps = sum(r["rps"] for r in mixed.values())
print(f"{'mixed, all four clients together':<44} {total_rps:>8.0f}")
print(f"\nPgBouncer SHOW POOLS ({pools['samples']} samples, 1 s apart): server connections active "
      f"at most {pools['max_server_connections_active']}, open at most "
      f"{pools['max_server_connections_open']}; clients active at most "
      f"{pools['max_clients_active']}, waiting at most {pools['max_clients_waiting']}")
print(f"requests answered (wrk): {answered}; counted by the server (/metrics): {counted}")
with_keys = sum(runs[name]["requests"] for name in ("valid", "revoked", "refused"))
print(f"requests sent with a key (wrk): {with_keys}; counted by the keys' usage: {usage_counted}")
cpu = {
    "web_cpu_seconds": web_cpu,
    "pgbouncer_cpu_seconds": bouncer_cpu,
    "web_cpu_ms_per_request": round(web_cpu * 1000 / max(answered, 1), 3),
    "pgbouncer_cpu_ms_per_request": round(bouncer_cpu * 1000 / max(answered, 1), 3),
}
cpu["requests_per_core_second"] = round(1000 / max(cpu["web_cpu_ms_per_request"], 0.001))
print(f"CPU per request (mixed run): gunicorn workers {cpu['web_cpu_ms_per_request']} ms, "
      f"PgBouncer {cpu['pgbouncer_cpu_ms_per_request']} ms  → about "
      f"{cpu['requests_per_core_second']} requests per second per core for the web tier\n")

checks = {
    "every valid request answered 200": set(runs["valid"]["statuses"]) == {"200"},
    "every refused request answered 403": set(runs["refused"]["statuses"]) == {"403"},
    "revoked and garbage keys only 401 or 429": all(
        set(runs[n]["statuses"]) <= expected[n] for n in ("revoked", "garbage")
    ),
    "no 5xx": not any(s.startswith("5") for r in runs.values() for s in r["statuses"]),
    "no socket errors": all(r["socket_errors"] == 0 for r in runs.values()),
    "server count = answers (+ in flight)": answered <= counted <= answered + in_flight,
    "usage counted = requests sent with a key (+ in flight)": (
        with_keys <= usage_counted <= with_keys + in_flight
    ),
}
for name, ok in checks.items():
    print(f"  {'PASS' if ok else 'FAIL'}  {name}")
with open(out, "w") as handle:
    json.dump({
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "setup": f"gunicorn {workers} sync workers -> PgBouncer 1.x transaction mode "
                 f"(default_pool_size 10) -> PostgreSQL, loopback; mixed: 4 wrk clients x "
                 f"{connections} connections for {duration}; {os.cpu_count()} cores",
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "elapsed_seconds": elapsed,
        "runs": runs,
        "mixed_rps": round(total_rps, 1),
        "pgbouncer_pools": pools,
        "cpu": cpu,
        "server_counted_requests": counted,
        "usage_counted_requests": usage_counted,
        "checks": checks,
    }, handle, indent=1)
    handle.write("\n")
print(f"\nwritten: {out}  ({elapsed} s)")
sys.exit(0 if all(checks.values()) else 1)
EOF
