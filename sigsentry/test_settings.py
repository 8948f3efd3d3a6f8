"""Settings for the test suite: the production settings with a test secret and a fast hasher.

Everything else (the database from DATABASE_URL, HTTPS off for plain-HTTP
loopback runs) comes from the same environment variables as production.
"""

import os
from pathlib import Path

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production-use-0123456789abcdef")
os.environ.setdefault("HTTPS_ONLY", "false")
# The production settings name no database without DEBUG; the suite's default is SQLite
# (its test database is a file of its own, below).
os.environ.setdefault("DATABASE_URL", f"sqlite:///{Path(__file__).resolve().parents[1]}/db.sqlite3")


def _redis_url_of_worker(url: str, worker: str) -> str:
    """REDIS_URL with its database moved up by the pytest-xdist worker's number (gw1: +1)."""
    from urllib.parse import parse_qsl, urlencode

    from redis.connection import parse_url

    db = parse_url(url).get("db", 0) + int(worker.removeprefix("gw"))
    base, _, query = url.partition("?")
    pairs = [(k, v) for k, v in parse_qsl(query) if k != "db"] + [("db", str(db))]
    return f"{base}?{urlencode(pairs)}"  # redis-py: ?db= wins over the path's


# Each test empties its Redis database (tests/conftest.py), so with pytest-xdist (`-n 2`)
# each worker has one of its own. Moved once, in the worker: the servers and workers it
# starts inherit the moved URL (and the mark that it was moved).
_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
if _worker and os.environ.get("REDIS_URL") and not os.environ.get("SIGSENTRY_TEST_REDIS_OF"):
    os.environ["REDIS_URL"] = _redis_url_of_worker(os.environ["REDIS_URL"], _worker)
    os.environ["SIGSENTRY_TEST_REDIS_OF"] = _worker

# After the environment above: the settings read it as they are imported.
from sigsentry.settings import *  # noqa: E402, F403
from sigsentry.settings import BASE_DIR, DATABASES, PASSWORD_HASHERS  # noqa: E402

# Argon2 stays in the list (stored hashes still verify); new hashes in tests are fast.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *PASSWORD_HASHERS]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True

# Gunicorn servers started by tests (tests/servers.py) must see the test database,
# so on SQLite it is a file rather than in memory.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {
        "NAME": str(BASE_DIR / "test-artifacts" / f"test-{os.getpid()}.sqlite3")
    }
    (BASE_DIR / "test-artifacts").mkdir(exist_ok=True)

# CI's test databases are copies of a template it keeps on a tablespace in memory (.ci/run):
# each transactional test ends by emptying every table, which took 1 to 3 s on this disk. The
# template is migrated once, so each copy's `migrate` finds every migration applied.
if DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3" and os.environ.get(
    "TEST_DATABASE_TEMPLATE"
):
    DATABASES["default"]["TEST"] = {"TEMPLATE": os.environ["TEST_DATABASE_TEMPLATE"]}

# Tests copy usage counters when they mean to (`flush_usage`), not from a background thread,
# unless a server started by a test asks for it.
USAGE_FLUSH_SECONDS = int(os.environ.get("USAGE_FLUSH_SECONDS", "0"))
# In-process tests read usage right after their requests: counted in the request, unless a
# server started by a test asks for batches.
USAGE_BATCH_SECONDS = float(os.environ.get("USAGE_BATCH_SECONDS", "0"))
# No test reaches GitHub: those that fetch keys on demand name a local server.
GITHUB_SECRET_SCANNING_KEYS_URL = os.environ.get("GITHUB_SECRET_SCANNING_KEYS_URL", "")
