"""Gunicorn settings read from the project directory (gunicorn loads ./gunicorn.conf.py).

Header lines up to 16 KiB reach the application, so an oversized credential
(say a 10 KB `Authorization`) gets the API's own JSON answer
(401 AUTHORIZATION_MALFORMED) instead of gunicorn's HTML 431; anything larger
is still refused by gunicorn before the application runs.

On SIGTERM, workers stop accepting and finish the requests in flight for up
to `graceful_timeout` seconds (a deploy or a scale-down drops no request).

Metrics (core.metrics): each worker writes its counts to files in
`PROMETHEUS_MULTIPROC_DIR`, and a scrape adds every process's files up. The
directory is emptied when the server starts (counts from an earlier run would
otherwise be added in), created in the temporary directory when the variable
is unset (and removed at exit), and an exited worker is marked dead.

The operations endpoints (/healthz, /readyz, /metrics) are left out of the
access log: a load balancer probing every few seconds would drown it. A token
link's secret (a password reset, an invitation) is masked wherever a line would
show it.
"""

import os
import re
import shutil
import tempfile
from pathlib import Path

from gunicorn.glogging import Logger

limit_request_field_size = 16 * 1024
graceful_timeout = 30

_OPERATIONS_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
_created_metrics_dir = None


#: The secret part of a token link (/reset/<token>/, /invitations/<token>/), as a path,
#: a URL in a Referer, or URL-encoded in a query (/login/?next=%2Finvitations%2F<token>%2F).
_TOKEN_IN_URL = re.compile(r"((?:/|%2F)(?:reset|invitations)(?:/|%2F))[^/?&#\s\"%]+", re.I)


class AccessLogWithoutProbes(Logger):
    def access(self, resp, req, environ, request_time):
        if environ.get("PATH_INFO") in _OPERATIONS_PATHS:
            return
        super().access(resp, req, environ, request_time)

    def atoms(self, resp, req, environ, request_time):
        """Every value a line may show (request line, path, query, Referer, any header),
        with token links' secrets masked, so a link opened is not a link logged."""
        atoms = super().atoms(resp, req, environ, request_time)
        return {
            name: _TOKEN_IN_URL.sub("\\1…", value) if isinstance(value, str) else value
            for name, value in atoms.items()
        }


logger_class = AccessLogWithoutProbes


def on_starting(server):
    global _created_metrics_dir
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
    else:
        _created_metrics_dir = tempfile.mkdtemp(prefix="sigsentry-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = _created_metrics_dir


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _created_metrics_dir:
        shutil.rmtree(_created_metrics_dir, ignore_errors=True)
