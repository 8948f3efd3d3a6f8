"""The benchmarks' own PostgreSQL databases.

The benchmarks empty their database, so they only ever use one whose name
contains "bench", given by their own variable (never the DATABASE_URL a shell
may have exported for development or tests).
"""

from __future__ import annotations

import os
import sys
from urllib.parse import urlsplit

BENCH_DATABASE_URL = "postgres://root@127.0.0.1:5432/sigsentry_bench"
LOAD_DATABASE_URL = "postgres://root@127.0.0.1:5432/sigsentry_bench_load"


def database_url(variable: str, default: str) -> str:
    """The URL in `variable` (or `default`), refused unless it names a benchmark database."""
    url = os.environ.get(variable) or default
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql", "pgsql"):
        sys.exit(f"{variable}: the benchmarks run on PostgreSQL (postgres://...)")
    if "bench" not in parts.path:
        sys.exit(f"{variable}: refusing a database whose name lacks 'bench' (it gets emptied)")
    return url


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database `url` names if it does not exist yet."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin_url = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
