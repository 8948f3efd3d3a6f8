#!/usr/bin/env bash
# `make run`'s two processes: the web server and one worker, started and stopped together.
#
# Each runs in its own process group (job control on), so a signal that ends the run
# reaches this script alone: Ctrl+C, the terminal closing (SIGHUP, which gunicorn would
# take for "reload" and keep serving with nobody to stop it), a SIGTERM to `make`, to
# this script or to the group. It asks each to stop exactly once (SIGTERM: gunicorn
# finishes the requests in flight, the worker its task) and waits for both; another
# Ctrl+C stops them at once. If the server stops by itself (its port in use, say), the
# worker is stopped too.
#
# From the Makefile: PY (the venv's python), GUNICORN, BIND (host:port).
set -u -m
"$PY" manage.py run_worker &
worker=$!
"$GUNICORN" sigsentry.wsgi:application --bind "$BIND" --workers 2 &
web=$!

stop() {
	# A second signal: at once (gunicorn's quick shutdown; the worker's second signal).
	trap 'kill -QUIT "$web" 2>/dev/null; kill -TERM "$worker" 2>/dev/null' INT TERM HUP
	kill -TERM "$web" "$worker" 2>/dev/null
	until wait; do :; done # interrupted by a signal: wait again
}
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM HUP
wait "$web"
status=$?
stop
exit "$status"
