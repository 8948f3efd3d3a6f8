"""Settings for the benchmarks only: production settings plus the peer libraries.

The peers (DRF's authtoken, django-rest-knox, djangorestframework-api-key) are
installed here and nowhere else, so the product never ships their tables. The
database is the benchmark's own PostgreSQL database; DEBUG is off (no query
log), HTTPS redirects are off (plain WSGI calls on loopback) and the secret key
is random per process. The connection is persistent (`CONN_MAX_AGE` from the
production settings) with `CONN_HEALTH_CHECKS` on, as in production: a persistent
connection is checked before its first use in each request, by every variant that touches the
database, the reference round trip included (a poll of the socket, `core.postgres`).
"""

import os
import secrets

# The entry points (auth_overhead.py, load_fixtures.py, load.sh) set DATABASE_URL
# to a benchmark database; see bench/db.py.
os.environ.setdefault("DATABASE_URL", "postgres://root@127.0.0.1:5432/sigsentry_bench")
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
# Straight to PostgreSQL, as a direct deployment declares it: values bound by the server,
# repeated statements prepared (README → Production). load_pgbouncer.sh sets `pgbouncer`.
os.environ.setdefault("DATABASE_POOLER", "none")
os.environ["DEBUG"] = "false"
# Usage counting and rate limits go through Redis, as in production (REDIS_URL, else
# BENCH_REDIS_URL).
if not os.environ.get("REDIS_URL"):
    os.environ["REDIS_URL"] = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
os.environ["HTTPS_ONLY"] = "false"

from sigsentry.settings import *  # noqa: F403
from sigsentry.settings import INSTALLED_APPS

INSTALLED_APPS = [
    *INSTALLED_APPS,
    "rest_framework.authtoken",
    "knox",
    "rest_framework_api_key",
]
ROOT_URLCONF = "bench.urls"
# No collected static files in a benchmark checkout; nothing here renders a page.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# The per-request access line (with the authentication decision) is logged at INFO as
# in production, but written to /dev/null: its formatting and write are measured, not printed.
# So are the audit lines of the fixtures' mints and revocations (before any measurement).
LOGGING = {
    **LOGGING,  # noqa: F405
    "handlers": {
        **LOGGING["handlers"],  # noqa: F405
        "devnull": {
            **LOGGING["handlers"]["console"],  # noqa: F405
            "class": "logging.FileHandler",
            "filename": os.devnull,
        },
    },
    "loggers": {
        **LOGGING["loggers"],  # noqa: F405
        "sigsentry.access": {"handlers": ["devnull"], "level": "INFO", "propagate": False},
        "sigsentry.audit": {"handlers": ["devnull"], "level": "INFO", "propagate": False},
    },
}
