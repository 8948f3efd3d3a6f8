#!/usr/bin/env bash
# Load test: wrk against gunicorn (2 workers) on PostgreSQL, loopback only. Run with `make load`.
#
# * Database: LOAD_DATABASE_URL (default postgres://root@127.0.0.1:5432/sigsentry_bench_load;
#   the name must contain "bench": it is emptied), migrated by bench/load_fixtures.py, which
#   also mints the credentials into a mode-600 temporary file (never printed; wrk's Lua reads
#   them there, so they are not on any command line either).
# * Server: gunicorn sigsentry.wsgi with the bench settings (production settings plus the
#   /v1/bench/* trivial views), DEBUG=false, HTTPS_ONLY=false, a random SECRET_KEY, on a free
#   127.0.0.1 port; stopped and the temporary files removed on exit, whatever happens.
#   Usage is counted in Redis as in production (LOAD_REDIS_URL, default db 12, emptied).
# * Runs (LOAD_DURATION each, default 10s; LOAD_CONNECTIONS, default 8; one wrk thread):
#   the no-auth view, our authentication on the same trivial view, DRF's TokenAuthentication
#   on it, GET /v1/me with a secret key and with a JWT, and a mixed run rotating a valid, a
#   revoked and a garbage key.
# * Checks (exit status 1 if one fails): no non-2xx answer for a valid credential, no 5xx in
#   the mixed run (its 429s are failed-credential throttling, reported separately), at most
#   one lastUsedAt write per key per minute (UPDATEs of the key table, from PostgreSQL's
#   statistics after the server stopped), and no count lost: the requests the usage API
#   counts on the valid and revoked keys equal those wrk sent with them, less at most the
#   requests still in flight when each wrk run stopped (wrk.lua counts what it sends).
set -euo pipefail

cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
DURATION="${LOAD_DURATION:-10s}"
CONNECTIONS="${LOAD_CONNECTIONS:-8}"
DATABASE_URL="${LOAD_DATABASE_URL:-postgres://root@127.0.0.1:5432/sigsentry_bench_load}"
LOAD_REDIS="${LOAD_REDIS_URL:-redis://127.0.0.1:6379/12}"
RESULTS=bench/results/load-latest.json

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 2; }

WORKDIR="$(mktemp -d)"
chmod 700 "$WORKDIR"
SERVER_PID=""
cleanup() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORKDIR"
}
trap cleanup EXIT

# One random SECRET_KEY for the fixtures and the server: the JWT is signed with a key derived
# from it. Exported through the environment only.
SECRET_KEY="$("$PY" -c 'import secrets; print(secrets.token_urlsafe(50))')"
export SECRET_KEY
CREDENTIALS="$WORKDIR/credentials"
LOAD_DATABASE_URL="$DATABASE_URL" "$PY" bench/load_fixtures.py "$CREDENTIALS"

updates() {
  "$PY" - "$DATABASE_URL" <<'EOF'
import sys, psycopg
with psycopg.connect(sys.argv[1]) as conn:
    row = conn.execute(
        "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'apikeys_apikey'"
    ).fetchone()
print(row[0] if row else 0)
EOF
}
UPDATES_BEFORE="$(updates)"

usage_total() {  # requests counted on the load's two keys (valid, revoked), as the usage API says
  DJANGO_SETTINGS_MODULE=bench.settings DATABASE_URL="$DATABASE_URL" REDIS_URL="$LOAD_REDIS" \
    "$PY" bench/usage_total.py "$CREDENTIALS"
}

PORT="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
URL="http://127.0.0.1:$PORT"
redis-cli -u "$LOAD_REDIS" flushdb >/dev/null
USAGE_BEFORE="$(usage_total)"
env DJANGO_SETTINGS_MODULE=bench.settings DATABASE_URL="$DATABASE_URL" DEBUG=false \
  REDIS_URL="$LOAD_REDIS" HTTPS_ONLY=false "$PY" -m gunicorn sigsentry.wsgi:application --bind "127.0.0.1:$PORT" --workers 2 \
  --timeout 30 >"$WORKDIR/gunicorn.log" 2>&1 &
SERVER_PID=$!

for _ in $(seq 150); do
  if curl -fsS -o /dev/null "$URL/v1/bench/noauth" 2>/dev/null; then break; fi
  kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$WORKDIR/gunicorn.log" >&2; exit 1; }
  sleep 0.2
done
curl -fsS -o /dev/null "$URL/v1/bench/noauth"

STARTED=$SECONDS
declare -A RESULT
run() {  # run <label> <path> <mode>
  local label=$1 path=$2 mode=$3 line
  line="$(wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s bench/wrk.lua "$URL$path" \
    -- "$mode" "$CREDENTIALS" | sed -n 's/^RESULT //p')"
  RESULT[$label]="$line"
  "$PY" -c '
import json, sys
r = json.loads(sys.argv[2])
print("{:<40} {:>8.0f} {:>8.2f} {:>8.2f}  {}".format(
    sys.argv[1], r["rps"], r["p50_ms"], r["p99_ms"], r["statuses"]))
' "$label" "$line"
}

echo "wrk: 1 thread, $CONNECTIONS connections, $DURATION per run; gunicorn: 2 workers; $(nproc) cores"
printf '%-40s %8s %8s %8s  %s\n' "run" "req/s" "p50 ms" "p99 ms" "statuses"
run "no-auth view" /v1/bench/noauth none
run "trivial view, ours (secret key)" /v1/bench/ours bearer:valid
run "trivial view, DRF TokenAuthentication" /v1/bench/drf-token token:drf_token
run "GET /v1/me, secret key" /v1/me bearer:valid
run "GET /v1/me, JWT" /v1/me bearer:jwt
run "GET /v1/me, mixed valid/revoked/garbage" /v1/me mixed
ELAPSED=$((SECONDS - STARTED))
sleep 2  # the last usage batches reach Redis (USAGE_BATCH_SECONDS=1)
USAGE=$(($(usage_total) - USAGE_BEFORE))

kill "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null || true
SERVER_PID=""
sleep 1  # the backends' statistics reach pg_stat_user_tables as they exit
UPDATES=$(($(updates) - UPDATES_BEFORE))

results_json="{"
for label in "${!RESULT[@]}"; do results_json+="\"$label\": ${RESULT[$label]},"; done
results_json="${results_json%,}}"
"$PY" - "$results_json" "$UPDATES" "$ELAPSED" "$RESULTS" "$DURATION" "$CONNECTIONS" "$USAGE" <<'EOF'
import json, os, sys
from datetime import UTC, datetime

results, updates, elapsed = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
usage_counted = int(sys.argv[7])
# Sent with the two keys whose use is counted; a run's requests still in flight when wrk
# stopped (generated, never answered) may or may not have reached the server.
keyed = [r for r in results.values() if {"valid", "revoked"} & set(r["sent"])]
sent_with_keys = sum(r["sent"].get("valid", 0) + r["sent"].get("revoked", 0) for r in keyed)
in_flight = sum(sum(r["sent"].values()) - r["requests"] for r in keyed)
valid = [label for label in results if "mixed" not in label]
# One valid key and one JWT session; only the key has lastUsedAt. One write per 60 s at most.
allowed_updates = 1 + elapsed // 60
checks = {
    "no non-2xx answer for a valid credential": all(
        set(results[label]["statuses"]) <= {"200"} for label in valid
    ),
    "no 5xx in the mixed run": not any(
        s.startswith("5") for s in results["GET /v1/me, mixed valid/revoked/garbage"]["statuses"]
    ),
    f"lastUsedAt writes <= {allowed_updates} (one key, {elapsed} s)": updates <= allowed_updates,
    "no socket errors": all(r["socket_errors"] == 0 for r in results.values()),
    "usage counted = requests sent with a key (- in flight)": (
        sent_with_keys - in_flight <= usage_counted <= sent_with_keys
    ),
}
mixed = results["GET /v1/me, mixed valid/revoked/garbage"]["statuses"]
print(f"\nmixed run: {mixed.get('200', 0)} ok, {mixed.get('401', 0)} 401 (revoked, garbage), "
      f"{mixed.get('429', 0)} 429 (failed-credential throttling)")
print(f"UPDATEs of the key table during the runs: {updates}")
print(f"requests sent with a key (wrk): {sent_with_keys}, of which {in_flight} in flight at "
      f"the stop; counted by the keys' usage: {usage_counted}\n")
for name, ok in checks.items():
    print(f"  {'PASS' if ok else 'FAIL'}  {name}")
with open(sys.argv[4], "w") as out:
    json.dump({
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "setup": f"wrk -t1 -c{sys.argv[6]} -d{sys.argv[5]}; gunicorn 2 sync workers; "
                 f"PostgreSQL and Redis on loopback; {os.cpu_count()} cores",
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "runs": results,
        "key_table_updates": updates,
        "requests_sent_with_keys": sent_with_keys,
        "requests_in_flight_at_stop": in_flight,
        "usage_counted_requests": usage_counted,
        "checks": checks,
    }, out, indent=1)
    out.write("\n")
print(f"\nwritten: {sys.argv[4]}")
sys.exit(0 if all(checks.values()) else 1)
EOF
