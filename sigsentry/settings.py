"""SigSentry settings, read from the environment (and `.env` when present).

The variables of SPEC §8 and a few operational ones (README → Configuration);
everything else is fixed here so that a deployment cannot drift into an insecure
combination by accident.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
import warnings
from datetime import UTC, datetime, timedelta
from email.utils import getaddresses
from pathlib import Path
from urllib.parse import unquote, urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured
from redis.connection import parse_url as parse_redis_url

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# Every variable is checked here, once: a bad value stops start-up with an error that names
# it, rather than being read as something else (django-environ's `env.bool` takes any unknown
# word for false) or failing later, per request, with an error that does not.

# django-environ's own true words (ok, y included), and their opposites.
_TRUE = ("true", "t", "1", "yes", "y", "on", "ok")
_FALSE = ("false", "f", "0", "no", "n", "off")


def _read_bool(name: str, default: bool) -> bool:
    """true/false, 1/0, yes/no, on/off in any case; empty or unset is the default."""
    raw = env.str(name, default="")
    value = raw.strip().lower()
    if not value:
        return default
    if value not in _TRUE + _FALSE:
        raise ImproperlyConfigured(
            f"{name} must be true or false (or 1/0, yes/no, on/off), not {raw!r}."
        )
    return value in _TRUE


def _read_number(
    name: str, default: float, kind: type[int] | type[float] = int, most: float = math.inf
) -> float:
    """A count or an interval: a plain number, 0 or more (what 0 means is each setting's),
    at most `most`. Not `env.int`/`env.float`: their errors name no variable, and
    `env.float` drops letters ("1s" reads 1, "nan" fails bare)."""
    raw = env.str(name, default="")
    if not raw.strip():
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = math.nan  # refused below, as "nan" is
    # NaN, inf or a negative interval would crash the usage threads (time.sleep, Timer).
    if not math.isfinite(value) or not 0 <= value <= most:
        what = "a whole number" if kind is int else "a number of seconds"
        bound = "" if most == math.inf else f" and at most {most:g}"
        raise ImproperlyConfigured(f"{name} must be {what}, 0 or more{bound}, not {raw!r}.")
    return value


def _require_long_secret(name: str, value: str, *, published_ok: bool = False) -> None:
    # Session JWTs are signed with an HMAC key derived from SECRET_KEY (or JWT_SIGNING_KEY):
    # a short one can be guessed offline from any token, a published one (this file's
    # development key, Django's `django-insecure-` keys of a new project) read by anyone,
    # and both started production with no word but `check --deploy`'s W009 (found by a
    # configuration audit). The message never quotes the value.
    if not value.strip():
        problem = "only whitespace"
    elif len(value) < 32:
        problem = "too short"
    elif not published_ok and value.startswith("django-insecure-"):  # _DEV_SECRET_KEY too
        problem = "a published development key"
    elif len(set(value)) < 5:
        problem = "too simple (fewer than 5 different characters)"
    else:
        return
    raise ImproperlyConfigured(
        f"{name} is {problem}: use at least 32 random characters, for example "
        "python -c 'import secrets; print(secrets.token_urlsafe(50))'."
    )


def _hide_password(detail: str, url: str) -> str:
    """A URL parser's error, without what it quotes from the URL's user info: a password
    with an unescaped `/` or `#` is cut there, and its first part read (and quoted) as a
    port."""
    userinfo = url.partition("://")[2].rpartition("@")[0]
    return re.sub(
        r"'([^']*)'",
        lambda quoted: "'…'" if userinfo and quoted[1] in userinfo else quoted[0],
        detail,
    )


def _what_url(url: str) -> str:
    """What a refused URL is, for a message: its scheme only (the rest may carry a password)."""
    if not url.strip():
        return "empty"
    scheme = urlsplit(url).scheme if "://" in url else ""
    return f"a {scheme}:// URL" if scheme else "not a URL"


def _check_redis_url(url: str) -> None:
    """As redis-py reads it (core.sharedredis, the cache), and stricter: a URL it cannot read
    would fail every API-key request (and turn the login throttles off), and a database that
    is not a number (`/notadb`) it silently reads as db 0."""
    try:
        options = parse_redis_url(url)
    except ValueError as exc:  # `from None`: its message may quote a piece of the URL
        raise ImproperlyConfigured(
            f"REDIS_URL cannot be read: {_hide_password(str(exc), url)} "
            "(for example redis://127.0.0.1:6379/0)."
        ) from None
    parts = urlsplit(url)
    if parts.scheme == "unix" and not parts.path:
        raise ImproperlyConfigured("REDIS_URL names no socket: unix:///path/to/redis.sock.")
    path_db = "" if parts.scheme == "unix" else unquote(parts.path).strip("/")
    if not re.fullmatch(r"[0-9]*", path_db) or options.get("db", 0) < 0:
        raise ImproperlyConfigured(
            "REDIS_URL's database must be a number, 0 or more (redis://host:6379/0)."
        )


def _is_link_base(url: str) -> bool:
    """Whether links can be made by appending a path: http(s)://host[:port][/path], nothing
    after. Nothing `urlsplit` would pass over: a space or line break (a value read from a
    file), an empty `?` or `#`, which made every emailed link `https://host\n/reset/...`
    or `https://host#/reset/...`; and no user or password, which every email would carry
    (found by a configuration audit)."""
    if re.search(r"[\s\x00-\x1f\x7f?#]", url):
        return False
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:  # a port that is not a number, or out of range
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and port_ok
        and "@" not in parts.netloc
    )


def _parse_duration(value: str, name: str) -> timedelta:
    """A duration from 1 minute to 10 years: 0 issued sessions already over, and one that a
    login's time plus it overflows answered every login with a 500."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", value)
    if not match:
        raise ImproperlyConfigured(f"{name} must look like 30d, 12h, 45m or 3600s, not {value!r}.")
    amount, unit = int(match.group(1)), match.group(2) or "s"
    seconds = amount * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    if not 60 <= seconds <= 3650 * 86400:
        raise ImproperlyConfigured(f"{name} must be from 1 minute to 3650 days, not {value!r}.")
    return timedelta(seconds=seconds)


def _parse_instant(value: str, name: str) -> datetime:
    try:
        instant = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an ISO 8601 time, not {value!r}.") from exc
    if instant.tzinfo is None:
        raise ImproperlyConfigured(f"{name} must carry a time zone (for example ...Z).")
    return instant.astimezone(UTC)  # HTTP dates (Sunset) and the emails say it in UTC


DEBUG = _read_bool("DEBUG", default=False)


def _read_secret(name: str) -> str:
    """A secret exactly as set (the environment or `.env`). Not through django-environ:
    it reads a value starting with `$` as the name of another variable, so a random key
    beginning with `$` (2 % of Django's `get_random_secret_key()`) was "not set", and
    `$PATH` became PATH's value, silently (found by an operator walkthrough)."""
    return os.environ.get(name, "")


#: `DEBUG`'s key when none is set; published here, so refused without `DEBUG`.
_DEV_SECRET_KEY = "django-insecure-dev-only-key-never-use-in-production-0123456789"
SECRET_KEY = _read_secret("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set the SECRET_KEY environment variable "
            "(or DEBUG=true for a local development run)."
        )
    SECRET_KEY = _DEV_SECRET_KEY
elif not DEBUG:
    _require_long_secret("SECRET_KEY", SECRET_KEY)
# Earlier SECRET_KEYs, comma-separated: what they signed or sealed is still accepted (reset
# links, the admin's cookies, TOTP and webhook secrets) while `reseal_secrets` moves the
# sealed secrets to the new key (README → Production → Rotating SECRET_KEY).
SECRET_KEY_FALLBACKS = [
    key.strip() for key in _read_secret("SECRET_KEY_FALLBACKS").split(",") if key.strip()
]
if not DEBUG:
    for _fallback in SECRET_KEY_FALLBACKS:
        # A published key may be an earlier one: moving off it is what rotation is for (its
        # sealed secrets open only with it until `reseal_secrets`). `check --deploy` warns
        # while it stays (sigsentry.W001: reset links can be forged with it).
        _require_long_secret("SECRET_KEY_FALLBACKS", _fallback, published_ok=True)
if any(re.search(r"\s", key) for key in SECRET_KEY_FALLBACKS):
    # "old1 old2" was read as one key that opens nothing.
    raise ImproperlyConfigured(
        "SECRET_KEY_FALLBACKS holds a space inside a key: separate the keys with commas."
    )

ALLOWED_HOSTS = [
    host.strip() for host in env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])
]
ALLOWED_HOSTS = [host for host in ALLOWED_HOSTS if host]
for _host in ALLOWED_HOSTS:
    # A URL or a port never matches a request's host: every request was a 400 while
    # /readyz answered 200 (found by a configuration audit). `[::1]` is an IPv6 address.
    if re.search(r"[\s/@]", _host) or ":" in _host.removeprefix("[").partition("]")[2]:
        raise ImproperlyConfigured(
            f"ALLOWED_HOSTS holds {_host!r}: name hosts only, comma-separated, without a "
            "scheme, port or path (sigsentry.example.com,api.sigsentry.example.com)."
        )
    if ":" in _host and not _host.startswith("["):
        raise ImproperlyConfigured(
            f"ALLOWED_HOSTS holds {_host!r}: name hosts only, without a port "
            "(an IPv6 address in brackets: [2001:db8::1])."
        )
if not ALLOWED_HOSTS:
    raise ImproperlyConfigured(
        "ALLOWED_HOSTS is empty: every request would be refused. Set ALLOWED_HOSTS to the "
        "host names the service answers to (for example sigsentry.example.com)."
    )
HTTPS_ONLY = _read_bool("HTTPS_ONLY", default=not DEBUG)
NUM_PROXIES = _read_number("NUM_PROXIES", default=0)  # 0: X-Forwarded-For is not trusted

JWT_SIGNING_KEY = _read_secret("JWT_SIGNING_KEY")
if JWT_SIGNING_KEY and not DEBUG:
    _require_long_secret("JWT_SIGNING_KEY", JWT_SIGNING_KEY)
JWT_SIGNING_KEY = (
    JWT_SIGNING_KEY
    or hmac.new(SECRET_KEY.encode(), b"sigsentry.jwt.signing-key", hashlib.sha256).hexdigest()
)
JWT_SESSION_MAX_AGE = _parse_duration(
    env.str("JWT_SESSION_MAX_AGE", default="30d"), "JWT_SESSION_MAX_AGE"
)
LEGACY_KEYS_DEPRECATED_AT = _parse_instant(
    env.str("LEGACY_KEYS_DEPRECATED_AT", default="2026-11-26T00:00:00Z"),
    "LEGACY_KEYS_DEPRECATED_AT",
)
LEGACY_KEYS_SUNSET_AT = _parse_instant(
    env.str("LEGACY_KEYS_SUNSET_AT", default="2027-05-26T00:00:00Z"), "LEGACY_KEYS_SUNSET_AT"
)
if LEGACY_KEYS_SUNSET_AT < LEGACY_KEYS_DEPRECATED_AT:
    raise ImproperlyConfigured(
        "LEGACY_KEYS_SUNSET_AT is earlier than LEGACY_KEYS_DEPRECATED_AT: legacy keys would "
        "stop authenticating before their deprecation is announced."
    )
# /metrics (core.ops) answers only `Authorization: Bearer <METRICS_TOKEN>`; unset, it is off.
METRICS_TOKEN = _read_secret("METRICS_TOKEN")
if METRICS_TOKEN and (len(METRICS_TOKEN.strip()) < 32 or METRICS_TOKEN.strip() != METRICS_TOKEN):
    # A space at either end never matched (the header's token is read stripped), and 32
    # spaces were a token.
    raise ImproperlyConfigured(
        "METRICS_TOKEN is too short or has spaces at its ends: use at least 32 random "
        "characters, for example python -c 'import secrets; print(secrets.token_urlsafe(32))'."
    )

# prometheus-client's multiprocess mode (core.metrics; gunicorn.conf.py creates it for the
# server): a name that is no directory failed every command with a logging-filter error.
_metrics_dir = env.str("PROMETHEUS_MULTIPROC_DIR", default="")
if _metrics_dir and not Path(_metrics_dir).is_dir():
    raise ImproperlyConfigured(
        f"PROMETHEUS_MULTIPROC_DIR is {_metrics_dir!r}, which is not a directory: create it "
        "(every web and worker process writes its counts there), or unset it."
    )

INSTALLED_APPS = [
    "apps.accounts.apps.SigSentryAdminConfig",  # django.contrib.admin, with our site
    # Before django.contrib.auth: its `changepassword` is the accounts' (the services').
    "apps.accounts.commands",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "corsheaders",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "core",  # its one table: the worker's counters for /metrics (core.counters)
    "apps.accounts",
    "apps.orgs",
    "apps.projects",
    "apps.apikeys",
    "apps.analyses",
    "apps.audit",
    "apps.webhooks",
    "apps.notifications",
    "apps.secretscanning",
    "django_tasks",
    "django_tasks_db",
    "apps.invitations",
    # The wiring, for commands that span every app (seed_demo).
    "sigsentry",
]

MIDDLEWARE = [
    "core.ops.OperationsMiddleware",  # /healthz, /readyz, /metrics: before everything else
    "core.middleware.AccessLogMiddleware",
    "core.middleware.ServiceUnavailableMiddleware",
    "core.middleware.HttpsRedirectKeepsMethodMiddleware",  # 308, not 301, for a POST
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Inside WhiteNoise, which sends its own compressed copies of static files.
    "core.middleware.CompressionMiddleware",
    "apps.apikeys.middleware.KeyUseMiddleware",
    "apps.apikeys.middleware.KeyOriginCorsMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "core.middleware.SecurityHeadersMiddleware",
    "core.middleware.RequestSizeLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "apps.accounts.middleware.DashboardSessionMiddleware",
    "core.middleware.FormAddressPageMiddleware",  # after the session: it knows who asks
]

ROOT_URLCONF = "sigsentry.urls"
WSGI_APPLICATION = "sigsentry.wsgi.application"
AUTH_USER_MODEL = "accounts.User"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "apps.accounts.context_processors.sidebar",
            ],
        },
    },
]

_database_url = env.str("DATABASE_URL", default="")
if not _database_url.strip():
    # The demo's default only for a development run: in production a variable that did not
    # reach the process (a `.env` line written `DATABASE_URL = ...`, a unit without it) ran
    # every process on its own new SQLite file, and `migrate` made one too (found by a
    # configuration audit).
    if not DEBUG:
        raise ImproperlyConfigured(
            "DATABASE_URL is not set. Set it to postgres://user@host:5432/name (or "
            "sqlite:////path/to/db.sqlite3 for SQLite; a build step that opens no database, "
            "such as collectstatic, may give sqlite://:memory:)."
        )
    _database_url = f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
try:
    with warnings.catch_warnings():
        # django-environ's warning for an unknown engine prints the parsed URL, password too.
        warnings.filterwarnings("ignore", message="Engine not recognized")
        DATABASES = {"default": env.db_url_config(_database_url)}
except Exception as exc:  # a bad port, say; `from None`: its message may quote the URL
    raise ImproperlyConfigured(
        f"DATABASE_URL cannot be read: {_hide_password(str(exc), _database_url)}"
    ) from None
# The service runs on PostgreSQL or SQLite only (core.queries); anything else, empty or
# garbage would fail at the first query (or as a bare KeyError here).
if DATABASES["default"].get("ENGINE") not in (
    "django.db.backends.postgresql",
    "django.db.backends.sqlite3",
):
    raise ImproperlyConfigured(
        "DATABASE_URL must be postgres://user@host:5432/name or sqlite:///path "
        f"(it is {_what_url(_database_url)})."
    )
DATABASES["default"].setdefault("CONN_MAX_AGE", 60)
# A persistent connection broken by a database or pooler restart is replaced before a
# request uses it, instead of failing that request (on PostgreSQL, checked by polling the
# socket rather than with a `SELECT 1`: core/postgres/base.py).
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
_POSTGRES = DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
if not _POSTGRES:
    # SQLite (the demo): a transaction takes the write lock as it begins (Django's documented
    # `transaction_mode`), so a second writer waits for the first (up to the 5 s timeout)
    # instead of failing with "database is locked" when both read before they wrote.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("transaction_mode", "IMMEDIATE")
if _POSTGRES and not DATABASES["default"]["NAME"]:
    raise ImproperlyConfigured("DATABASE_URL names no database: postgres://user@host:5432/name.")
if _POSTGRES:
    # Django's backend, with a health check that costs no round trip (core/postgres/base.py).
    DATABASES["default"]["ENGINE"] = "core.postgres"
    # A short connect timeout turns an unreachable database into a fast 503.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 3)
    # A database that vanished without a word (host powered off, network cut) is noticed in
    # seconds, not after TCP's ~15 minutes of retransmissions: a query it does not acknowledge
    # fails after 10 s (a 503, before gunicorn's 30 s worker timeout), and an idle persistent
    # connection is probed after 30 s, so the health check's poll sees it broken (libpq's
    # documented TCP options; DATABASE_URL's own values win).
    for _option, _value in (
        ("keepalives", 1),
        ("keepalives_idle", 30),
        ("keepalives_interval", 10),
        ("keepalives_count", 3),
        ("tcp_user_timeout", 10_000),
    ):
        DATABASES["default"]["OPTIONS"].setdefault(_option, _value)

# Where DATABASE_URL leads decides what may outlive a transaction on the server.
#
# By default (DATABASE_POOLER unset, or `pgbouncer`) nothing does, so the service runs
# unchanged straight to PostgreSQL and behind PgBouncer in transaction pooling mode (SPEC
# §4.14), where consecutive transactions of one connection may run on different server
# sessions: no server-side cursors (named cursors span fetches) and no prepared statements
# (PgBouncer before 1.21 cannot follow them; psycopg would run a name it prepared on one
# session on another, where another client may hold that name for other SQL), so values are
# bound client-side as Django does by default.
#
# DATABASE_POOLER=none declares that DATABASE_URL is PostgreSQL itself (a connection that
# finds a pooler in between is refused: core/postgres/base.py): values are then bound by
# the server and psycopg prepares a statement once a connection has run it five times
# (Django's documented `server_side_binding`, psycopg's `prepare_threshold`), so the key
# lookup is planned once per connection, not per request.
# See README "Production".
DATABASE_POOLER = env.str("DATABASE_POOLER", default="")
if DATABASE_POOLER not in ("", "pgbouncer", "none"):
    raise ImproperlyConfigured(
        f"DATABASE_POOLER must be unset, 'pgbouncer' or 'none', not {DATABASE_POOLER!r}."
    )
if DATABASE_POOLER and not _POSTGRES:
    raise ImproperlyConfigured(
        f"DATABASE_POOLER={DATABASE_POOLER} needs a PostgreSQL DATABASE_URL "
        "(PgBouncer's address, or PostgreSQL's for 'none')."
    )
if DATABASE_POOLER == "none":
    DATABASES["default"]["OPTIONS"]["server_side_binding"] = True
    DATABASES["default"]["OPTIONS"]["prepare_threshold"] = 5
elif _POSTGRES:
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
    DATABASES["default"]["OPTIONS"]["prepare_threshold"] = None
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    _check_redis_url(REDIS_URL)
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "sigsentry",
            "OPTIONS": {"socket_connect_timeout": 0.25, "socket_timeout": 0.25},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
# Django's rules, run on the password as it is hashed (NFKC: apps.accounts.passwords).
_RULES = "django.contrib.auth.password_validation"
AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "apps.accounts.passwords.StabilizedPasswordRules",
        "OPTIONS": {
            "validators": [
                {"NAME": f"{_RULES}.UserAttributeSimilarityValidator"},
                {"NAME": f"{_RULES}.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
                {"NAME": f"{_RULES}.CommonPasswordValidator"},
                {"NAME": f"{_RULES}.NumericPasswordValidator"},
            ]
        },
    }
]
AUTHENTICATION_BACKENDS = ["apps.accounts.passwords.AccountBackend"]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG

LOGIN_URL = "/login/"
# Where Django's own login (the admin's) goes when its `next` is refused as off-site: not
# Django's default /accounts/profile/, a 404 (found by a session audit).
LOGIN_REDIRECT_URL = "/admin/"

# Reset links die after an hour, and at once when the password changes (SPEC §4.13).
PASSWORD_RESET_TIMEOUT = 3600

# Requests bodies and headers: reject the oversized cleanly, long before parsing.
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024  # an analysis input is up to 100,000 characters
DATA_UPLOAD_MAX_NUMBER_FIELDS = 200

# Security headers (the CSP is set by core.middleware.SecurityHeadersMiddleware).
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Django sessions are the operators' admin only (the dashboard's are JWT `AuthSession`s).
# Signed cookies: nothing in the database a reader of it or of a backup could log in with
# (the database backend keeps each live session id in clear). A cookie lives a working
# day; a logout or any ending of the user's sessions ends every copy of it
# (`User.session_epoch`, which `get_session_auth_hash` signs over).
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
SESSION_COOKIE_AGE = 12 * 3600
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = False  # the page scripts send it back in X-CSRFToken
SESSION_COOKIE_SECURE = HTTPS_ONLY
CSRF_COOKIE_SECURE = HTTPS_ONLY
SECURE_SSL_REDIRECT = HTTPS_ONLY
SECURE_HSTS_SECONDS = 31_536_000 if HTTPS_ONLY else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS_ONLY
SECURE_HSTS_PRELOAD = HTTPS_ONLY
if NUM_PROXIES:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    USE_X_FORWARDED_HOST = False
CSRF_FAILURE_VIEW = "core.views.csrf_failure"
# Django's error reports (the DEBUG page, mails to ADMINS) hide settings named for secrets;
# these also hide URLs, whose user info holds a password (REDIS_URL, the cache's LOCATION).
DEFAULT_EXCEPTION_REPORTER_FILTER = "core.reporting.ReportFilterHidingUrls"

# Key usage counters are copied to the database this often per process (0: only by
# the worker and `manage.py flush_usage`).
USAGE_FLUSH_SECONDS = _read_number("USAGE_FLUSH_SECONDS", default=60, most=86400)
# Each web process sends its key use counts to Redis this often, in one round trip (0: in
# the request itself). Keys with a rate limit always check it in the request.
USAGE_BATCH_SECONDS = _read_number("USAGE_BATCH_SECONDS", default=1.0, kind=float, most=3600)
if 0 < USAGE_BATCH_SECONDS < 0.05:
    # Each process's sender wakes this often: 0.0001 was a loop on a core.
    raise ImproperlyConfigured(
        f"USAGE_BATCH_SECONDS must be 0 (in the request) or at least 0.05, "
        f"not {USAGE_BATCH_SECONDS:g}."
    )

REST_FRAMEWORK = {
    # A key's own rate limit (SPEC §4.10), at DRF's throttle step.
    "DEFAULT_THROTTLE_CLASSES": ["apps.apikeys.gate.steps.KeyRateLimit"],
    "DEFAULT_AUTHENTICATION_CLASSES": ["apps.apikeys.authentication.BearerAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["core.permissions.IsAuthenticatedPrincipal"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "core.errors.api_exception_handler",
    "DEFAULT_METADATA_CLASS": "core.metadata.ApiMetadata",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_SCHEMA_CLASS": "core.openapi_schema.UuidPathAutoSchema",
    "DEFAULT_PAGINATION_CLASS": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "SigSentry API",
    # The first paragraph is a newcomer's first request: the page said only how times
    # are written, and how to send a key was behind Authorize (a first-hour walkthrough).
    "DESCRIPTION": (
        "Identity and access for the SigSentry log-analysis API.\n\n"
        "**Your first request.** Create a key on the dashboard: a project's *API Keys* "
        "page for a server or script, its *SDK Keys* page for a web page (the full key is "
        "shown once). Send it in the `Authorization` header as `Bearer <key>`; `GET /v1/me` "
        "answers which key, project and organization it is, and `POST /v1/analyses` with "
        '`{"title": "…", "input": "…"}` queues an analysis:\n\n'
        "```\ncurl https://sigsentry.example.com/v1/me \\\n"
        '  -H "Authorization: Bearer ss_secret_…"\n```\n\n'
        "An organization key (`ss_org_`) also sends the project's id in `X-Project-Id`. "
        "To try an operation on this page, give the key to *Authorize*. Every error is "
        '`{"error": {"code", "message", "details"}}`: branch on `code`, show '
        "`message`.\n\n"
        "Every time is ISO 8601 "
        "UTC with six fractional digits and a Z (`2030-01-31T12:00:00.000000Z`). A time "
        "sent carries `Z` or an offset (`2030-01-31T17:30:00+05:30`), is stored in UTC "
        "and answered with `Z`; one without a zone (`2030-01-31T12:00:00`, a date alone) "
        "is refused with VALIDATION_ERROR, never guessed to be UTC, as are a leap second "
        "(`23:59:60`) and a date that does not exist. Fractions beyond microseconds are "
        "cut. Headers: `Retry-After` in whole seconds (at least 1), `X-RateLimit-Reset` "
        "in Unix seconds, `Sunset` an HTTP-date (RFC 9110)."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The document and its page are public: no credential is read, so a stale
    # dashboard cookie or a wrong bearer still gets them (SPEC §4.8).
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "core.openapi.one_enum_per_value_set",
        "core.openapi.add_request_keywords",
        "core.openapi.name_path_variables_as_spec",
        "core.openapi.throttled_wherever_a_credential_is_read",
        "core.openapi.declare_response_headers",
        "core.openapi.nullable_references_as_oas_30",
    ],
    "SCHEMA_PATH_PREFIX": r"/v1",
    "ENUM_NAME_OVERRIDES": {
        "LogSourceKindEnum": "apps.projects.models.LogSource.Kind",
        "ChannelKindEnum": "apps.projects.models.Channel.Kind",
        "WebhookEventTypeEnum": "apps.webhooks.models.EventType",
        "DeliveryStatusEnum": "apps.webhooks.models.DeliveryStatus",
        "WebhookStatusEnum": ["enabled", "disabled"],
        "PermissionsEnum": "core.permissions.ALL_PERMISSIONS",
        "SdkPermissionsEnum": "core.permissions.SDK_LOCKED_PERMISSIONS",
        # the audit events' `?action=` (`core.openapi.one_enum_per_value_set`); an
        # event's `action` stays text, so a client parses an action added after it was built
        "AuditActionEnum": "apps.audit.services.Action.ALL",
    },
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(hours=24),
    "REFRESH_TOKEN_LIFETIME": JWT_SESSION_MAX_AGE,
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": False,
    "ALGORITHM": "HS256",
    "SIGNING_KEY": JWT_SIGNING_KEY,
    "VERIFYING_KEY": None,
    "AUDIENCE": "sigsentry-api",
    "ISSUER": "sigsentry",
    "LEEWAY": 0,
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "sub",
    "TOKEN_TYPE_CLAIM": "typ",
    "JTI_CLAIM": "jti",
    "AUTH_HEADER_TYPES": ("Bearer",),
}

# CORS for the browser SDK: analysis endpoints (and /v1/me) from any origin, with
# the two headers the SDK sends. Per-key allowed origins are enforced by
# apps.apikeys.middleware.KeyOriginCorsMiddleware and the authentication class.
CORS_URLS_REGEX = r"^/v1/(analyses|me)(/.*)?$"
CORS_ALLOW_ALL_ORIGINS = True
CORS_ALLOW_CREDENTIALS = False
CORS_ALLOW_HEADERS = ["authorization", "content-type", "x-project-id"]
CORS_ALLOW_METHODS = ["GET", "POST", "OPTIONS"]
CORS_PREFLIGHT_MAX_AGE = 600
# What a browser script may read of an answer (a rate-limited SDK key's budget, when to retry,
# a legacy key's end), as GitHub's API exposes them.
CORS_EXPOSE_HEADERS = [
    "Retry-After",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "Deprecation",
    "Sunset",
    "X-Request-Id",
]

# Throttle rates: (requests, seconds).
THROTTLE_RATES = {
    "failed_auth_ip": (60, 60),
    "login_account": (10, 300),
    "login_ip": (30, 300),
    "signup_ip": (20, 3600),
    "mint_org": (60, 60),
    # Mints per user across organizations (rolls included): `mint_org` is per organization,
    # and a user creates 20 a day, each with its own 3,600 an hour; every key, revoked or
    # not, is kept for good (SPEC §2.1) with its audit events.
    "mint_user": (1000, 3600),
    # Key changes (`PATCH` a key, the dashboard's Origins and Edit limits dialogs), as mints:
    # each records an audit event and a `key.updated` event for every webhook of the
    # organization (20), and nothing bounded them (a pentest: 100 renames in 19 s queued
    # 2,000 POSTs to one URL).
    "key_update_org": (60, 60),
    "key_update_user": (1000, 3600),
    "leak_report_ip": (20, 60),
    "refresh_ip": (120, 60),
    # Account security (SPEC §4.13): reset mails per client and per normalized address,
    # wrong second-factor codes per account (as wrong passwords, and 100 a day: NIST
    # 800-63B's bound on consecutive failures), invitations per org, per inviter and per
    # invited address (a day, across organizations), and organizations per creator: each
    # new organization had 50 fresh invitations an hour, mail with a name its creator
    # chose, to any address.
    "password_reset_ip": (20, 3600),
    "password_reset_account": (5, 3600),
    "mfa_account": (10, 300),
    "mfa_account_day": (100, 86400),
    "invite_org": (50, 3600),
    "invite_user": (50, 3600),
    "invite_address": (10, 86400),
    # An inviter whose address is not confirmed (a day, across organizations): the mail
    # carries a name its creator chose to any address (found by an email audit).
    "invite_unconfirmed_user": (10, 86400),
    "create_org_user": (20, 86400),
    # Projects created per user across organizations: MAX_PROJECTS_PER_ORGANIZATION bounds
    # one organization, and a user creates 20 of those a day (a bounds audit: 280,000
    # projects an hour from one process, each with its own 100 log sources and channels).
    "create_project_user": (300, 3600),
    # Email confirmation codes (apps.accounts.email_confirmation): mailed per account, and
    # wrong ones per account, as second-factor codes.
    "email_code_account": (5, 3600),
    "email_code_wrong": (10, 300),
    # A day's budget is a squatter's chance at a million codes: 20 give 0.7 % a year.
    "email_code_wrong_day": (20, 86400),
    # Webhooks created per user: each waits up to 5 s for its URL's host lookup.
    "webhook_create_user": (30, 3600),
    # Members added by an address that has no account (a 404 says so): per client as
    # sign-ups (which tell it too), and per adder a day.
    "member_add_miss_ip": (20, 3600),
    "member_add_miss_user": (20, 86400),
    # Dashboard downloads (audit log, key inventory) per user: each holds a sync worker for
    # up to several seconds (100,000 rows), so one account cannot keep the workers busy.
    "download_user": (30, 3600),
    # What one project's callers store as analyses, whatever the credential: an SDK key is
    # public by design, and nothing bounded it (a bounds audit: ~27 GB an hour per web
    # process into someone else's project). Creations per project an hour and a UTC day,
    # and follow-ups and feedback together (each analysis holds at most 100 of each, but
    # any old analysis of the project takes them). Worst case a project a UTC day: 5,000
    # inputs of 100,000 characters and 5,000 replies of 10,000, 550 million characters:
    # 0.55 GB of ASCII, at most 2.2 GB of UTF-8 (4 bytes a character), titles 4 MB more.
    "analysis_create_project": (1000, 3600),
    "analysis_create_project_day": (5000, 86400),
    "analysis_reply_project": (1000, 3600),
    "analysis_reply_project_day": (5000, 86400),
}

# Outbound work (webhook deliveries, emails, scheduled checks) runs in `manage.py run_worker`.
# The queue is a table in the same database (django-tasks' ORM backend), so a task is
# enqueued inside the transaction of the change that caused it.
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}

# Email (SPEC §4.11): django-environ's EMAIL_URL, e.g. smtp+tls://user:pass@host:587.
# Without it, DEBUG prints mail to the console; otherwise mail fails (and is retried)
# until it is set: the worker logs "EMAIL_URL is not set".
_email_url = env.str("EMAIL_URL", default="")
if _email_url:
    try:
        _email = env.email_url_config(_email_url)
    except Exception as exc:  # an unknown scheme, a bad port; `from None`, as DATABASE_URL's
        raise ImproperlyConfigured(
            f"EMAIL_URL cannot be read: {_hide_password(str(exc).strip(), _email_url)} "
            "(for example smtp+tls://user:pass@host:587)."
        ) from None
    globals().update(_email)
    if not DEBUG and _email["EMAIL_BACKEND"] in (
        "django.core.mail.backends.console.EmailBackend",
        "django.core.mail.backends.filebased.EmailBackend",
    ):
        # Every reset and invitation link, into the log or onto the disk (found by a
        # configuration audit).
        raise ImproperlyConfigured(
            "EMAIL_URL writes every email (password-reset and invitation links included) "
            "to the console or to files: only with DEBUG=true. Use an SMTP URL such as "
            "smtp+tls://user:password@smtp.example.com:587."
        )
    if _email.get("EMAIL_PORT") == 465 and not _email.get("EMAIL_USE_SSL"):
        # smtps:// and smtp+tls:// start in clear and upgrade (STARTTLS): against port 465's
        # TLS from the first byte every send waited 10 s and failed.
        raise ImproperlyConfigured(
            "EMAIL_URL names port 465, which speaks TLS from the first byte: use "
            "smtp+ssl://user:password@host:465 (or smtp+tls:// on port 587)."
        )
elif DEBUG:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
else:
    EMAIL_BACKEND = "core.mail.UnconfiguredEmailBackend"
EMAIL_TIMEOUT = 10
# Date headers in TIME_ZONE (UTC): `+0000`; Django's default writes `-0000`, which RFC 5322
# §3.3 reserves for a time whose zone is unknown.
EMAIL_USE_LOCALTIME = True
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="SigSentry <no-reply@localhost>")
_senders = getaddresses([DEFAULT_FROM_EMAIL])
if (
    re.search(r"[\x00-\x1f\x7f]", DEFAULT_FROM_EMAIL)
    or len(_senders) != 1
    or "@" not in _senders[0][1]
):
    # A line break (a value read from a file) failed every send with BadHeaderError.
    raise ImproperlyConfigured(
        "DEFAULT_FROM_EMAIL must be one address on one line, such as "
        "'SigSentry <no-reply@sigsentry.example.com>'."
    )
SERVER_EMAIL = DEFAULT_FROM_EMAIL
#: The base of every link in an email.
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")
if not _is_link_base(SITE_URL):
    _shown = f"not {SITE_URL!r}" if "@" not in SITE_URL else "and without a user or password"
    raise ImproperlyConfigured(
        f"SITE_URL must be an absolute http(s) URL such as https://sigsentry.example.com, {_shown}."
    )

# Webhooks (SPEC §4.11): only https:// URLs resolving to public addresses, unless this
# development/test switch is on.
WEBHOOKS_ALLOW_PRIVATE = _read_bool("WEBHOOKS_ALLOW_PRIVATE", default=False)
# At most this many webhook attempts of one organization to endpoints failing now at once,
# across every worker: one organization's dead endpoints hold that many workers, never all.
WEBHOOK_ATTEMPTS_PER_ORGANIZATION = (
    _read_number("WEBHOOK_ATTEMPTS_PER_ORGANIZATION", default=1, most=1000) or 1
)

# GitHub secret scanning (SPEC §4.12): path of GitHub's public keys (JSON); unset → 401.
GITHUB_SECRET_SCANNING_KEYS = env.str("GITHUB_SECRET_SCANNING_KEYS", default="")
# Where the endpoint fetches the keys itself when a report names one the file lacks (GitHub
# rotated its key since the last refresh_github_keys), at most every 5 minutes; "" never.
GITHUB_SECRET_SCANNING_KEYS_URL = env.str(
    "GITHUB_SECRET_SCANNING_KEYS_URL",
    default="https://api.github.com/meta/public_keys/secret_scanning",
)

# Structured logs (core.logging.JsonFormatter): one JSON object per line, with the
# authentication decision's fields (auth_outcome, client_ip, key_id, key_prefix, user_id)
# as top-level fields. No credential, digest or password is ever logged.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "core.logging.JsonFormatter"}},
    "filters": {
        "skip_operations_paths": {"()": "core.ops.SkipOperationsPaths"},
        # A path can carry a live token (reset, invitation links): Django's own lines get the
        # URL pattern instead, at their loggers (before any handler) and at the console.
        "redact_request_path": {"()": "core.logging.RedactRequestPath"},
        "request_id": {"()": "core.logging.RequestIdFilter"},
        "without_host_value": {"()": "core.logging.WithoutHostValue"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["redact_request_path", "request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "sigsentry": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.request": {
            "handlers": ["console"],
            "level": "ERROR",
            "propagate": False,
            "filters": ["skip_operations_paths", "redact_request_path"],
        },
        "django.security.csrf": {"level": "WARNING", "filters": ["redact_request_path"]},
        "django.security.DisallowedHost": {"filters": ["without_host_value"]},
    },
}
