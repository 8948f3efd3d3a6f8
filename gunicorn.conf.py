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
is unset (and removed at exit), and an exited worker is marked dead. With `--preload`
and metrics on (`METRICS_TOKEN`), the variable must be set before the server starts: the
application is loaded before any hook could set it, so the server refuses to start
without it.

The operations endpoints (/healthz, /readyz, /metrics) are left out of the
access log: a load balancer probing every few seconds would drown it. A token
link's secret (a password reset, an invitation) is masked wherever a line of the
access or the error log would show it, however the link is written: characters
of the token or of its path %-encoded, the whole link URL-encoded up to four
times over (in a query's `next=`, in a Referer), an extra slash. A value holding
such a link is written decoded, the secret masked and its non-printable
characters %-encoded again; a value encoded more than four times over is written
as it came, any link in it masked as it is (never blanked: a client could
otherwise hide its own request line). Control characters (C0, DEL, C1: a terminal showing
the log obeys them) are written as `\\xHH`. A credential a client put in a URL or a header
the line shows (an API key after its prefix, a JWT, the value of a query parameter
named for a secret: `?token=`, `?api_key=`, `?password=`) is masked the same way: the
API reads credentials from `Authorization` only, but a client's mistake must not
become a secret in the log. Other values are written unchanged.
"""

import logging
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote, unquote

from gunicorn.glogging import Logger

limit_request_field_size = 16 * 1024
graceful_timeout = 30
# gunicorn 25.1+ opens a control socket at a fixed path in $HOME, which every instance on a
# host replaces and every one that exits deletes; nothing here uses it (older releases
# ignore the name).
control_socket_disable = True

_OPERATIONS_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
_created_metrics_dir = None


#: The secret part of a token link (/reset/<token>/, /invitations/<token>/, the API's
#: /v1/invitations/<token>/accept) in a value URL-decoded first: a path where a path starts
#: (a request line, a URL in a Referer, a link in a query: /login/?next=...), so that
#: /orgs/<id>/invitations/<id>/cancel/, which holds no secret, is written as it is. A URL's
#: `//host` is looked for only where a run of slashes begins: from every slash of a run,
#: gunicorn's "Invalid request" line with a 16 KB header name of slashes took 1.7 s to mask
#: (found by the DoS audit).
_TOKEN_IN_URL = re.compile(
    r"((?:^|[\s\"'=?&]|(?<!/)//[^/\s\"]*|(?<!/)/{3,}+[^/\s\"]+)"
    r"(?:/v1)?/+(?:reset|invitations)/+)[^/?&#\s\"]+",
    re.I | re.A,  # ASCII case folding only, as `_HINTS` compares
)
#: The same in a value encoded more times over than is ever sent for real (crafted), read
#: as it is: separators %-encoded at any depth, the secret's own escapes included.
_TOKEN_IN_ENCODED_URL = re.compile(
    r"((?:/|%(?:25)*2F)(?:reset|invitations)(?:/|%(?:25)*2F)+)"
    r"(?:[^/?&#\s\"%]|%(?:25)*+(?!2[Ff])[0-9A-Fa-f]{2})+",
    re.I | re.A,
)
#: An API key (its prefix kept: apps.apikeys.keyformat's prefixes, legacy ones included,
#: as long as one: a key's 38 characters, a legacy key's at least 8, so `tb_logo.png` or a
#: traceback's `tb_frame` stay) or a JWT (three base64url parts, the first a JSON object).
_CREDENTIAL = re.compile(
    r"(?<![A-Za-z0-9])(?:((?:ss_pub|ss_secret|ss_org)_)[A-Za-z0-9]{20,}"
    r"|((?:ss_live|tb)_)[A-Za-z0-9_\-]{8,})"
    r"|(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*",
    re.A,
)
#: The value of a query parameter named for a secret (`token`, `access_token`, `api_key`,
#: `apikey`, `password`, `secret`, `code`, `signature`, ...).
_SECRET_PARAMETER = re.compile(
    r"((?:^|[?&;])[\w.\-\[\]]*"
    r"(?:token|key|pass|password|passwd|pwd|secret|code|otp|mfa|sessionid|session|signature"
    r"|sig|auth|credential|credentials)=)"
    r"[^&;#\s\"]+",
    re.I | re.A,
)
#: %-encoded again in a decoded value once masked, so that a decoded %0A or %22 cannot forge
#: a line (the masks' "…" stays).
_UNPRINTABLE = re.compile(r"[^\x20-\x7e…]|\"")
#: Browsers and mail clients encode a link once, a redirect chain maybe twice or three times.
_MOST_DECODES = 4


def _decoded(value: str) -> str | None:
    """`value` URL-decoded until it no longer changes; None past _MOST_DECODES rounds."""
    for _ in range(_MOST_DECODES + 1):
        if "%" not in value:
            return value
        decoded = unquote(value)
        if decoded == value:
            return value
        value = decoded
    return None


#: What every secret the patterns mask holds (lower case): a value without any is written
#: as it is, without running them (most values: addresses, times, sizes, user agents).
_HINTS = ("reset", "invitations", "ss_", "tb_", "eyj", "=")


def _mask_credentials(text: str) -> str:
    text = _CREDENTIAL.sub(lambda m: f"{m[1] or m[2] or ''}…", text)
    return _SECRET_PARAMETER.sub("\\1…", text)


def _masked(text: str) -> str:
    return _mask_credentials(_TOKEN_IN_URL.sub("\\1…", text))


def _mask_token_links(value: str) -> str:
    """`value` unchanged when no token link or credential is in it, in any decoded form;
    else decoded, with the secrets masked (the encoded form would hide them from the
    patterns)."""
    decoded = _decoded(value)
    if decoded is None:  # over-encoded: masked as it is, never blanked (a request's own line)
        return _mask_credentials(_TOKEN_IN_ENCODED_URL.sub("\\1…", value))
    lowered = decoded.lower()
    if not any(hint in lowered for hint in _HINTS):
        return value
    masked = _masked(decoded)  # before %-encoding: an escape must not hide a secret's start
    if masked == decoded:
        return value
    return _UNPRINTABLE.sub(lambda c: quote(c[0], safe=""), masked)


#: A control character in a value a client chose (a User-Agent, a Referer, a header): C0
#: with tab, DEL and C1. gunicorn hands header bytes 0x80-0x9F over as C1 characters (latin-1),
#: and the line goes out as UTF-8, where a terminal showing the log reads U+009B as CSI and
#: U+009D as OSC: a client could clear the screen, retitle it or plant a link in it.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _escape_controls(value: str) -> str:
    """`value` with each control character written as `\\xHH`, as nginx writes them."""
    return _CONTROL.sub(lambda c: f"\\x{ord(c[0]):02x}", value)


class _MaskTokenLinks(logging.Filter):
    """gunicorn's error log names requests too ("Error handling request GET /reset/…/",
    "Invalid request from ip=…: Invalid HTTP request line: '…'"), in its message and
    perhaps in a traceback (masked line by line: it stays readable)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = _mask_lines(record.getMessage()), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = _mask_lines(record.exc_text)
        return True


def _mask_lines(text: str) -> str:
    return "\n".join(_mask_token_links(line) for line in text.split("\n"))


_mask_error_log = _MaskTokenLinks()


class AccessLogWithoutProbes(Logger):
    def setup(self, cfg):
        super().setup(cfg)
        self.error_log.addFilter(_mask_error_log)  # once: the same filter is not added twice
        # The atoms the access line's format names (header atoms as gunicorn looks them up,
        # lower case): only those are written, so only those are masked (a few µs each).
        self.written_atoms = {
            name.lower() if name.startswith("{") else name
            for name in re.findall(r"%\(([^)]*)\)", cfg.access_log_format)
        }

    def access(self, resp, req, environ, request_time):
        if environ.get("PATH_INFO") in _OPERATIONS_PATHS:
            return
        super().access(resp, req, environ, request_time)

    def atoms(self, resp, req, environ, request_time):
        """Every value a line may show (request line, path, query, Referer, any header),
        with token links' secrets masked, so a link opened is not a link logged."""
        atoms = super().atoms(resp, req, environ, request_time)
        for name in self.written_atoms.intersection(atoms):
            if isinstance(atoms[name], str):
                atoms[name] = _escape_controls(_mask_token_links(atoms[name]))
        return atoms


logger_class = AccessLogWithoutProbes


def _metrics_enabled() -> bool:
    from core import metrics  # loaded already: only a preloaded application asks

    return metrics.enabled()


def on_starting(server):
    global _created_metrics_dir
    if server.cfg.workers < 1:
        # `--workers 0` (or WEB_CONCURRENCY=0) listened with no worker: every request hung
        # (found by a configuration audit).
        server.log.error("--workers (WEB_CONCURRENCY) must be 1 or more")
        sys.exit(1)
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if server.cfg.preload_app and not directory and _metrics_enabled():
        # The application, and prometheus-client with it, was loaded before this hook: its
        # counts would stay in each worker's memory, and a scrape read an empty directory
        # (found by the observability audit). Refused rather than silently counting nothing.
        server.log.error(
            "--preload needs PROMETHEUS_MULTIPROC_DIR set before the server starts "
            "(a directory the metrics of every worker are written to)"
        )
        sys.exit(1)
    if directory:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
    else:
        _created_metrics_dir = tempfile.mkdtemp(prefix="sigsentry-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = _created_metrics_dir


def when_ready(server):
    """`make run` names its URL once the server listens, not before (a port in use would
    otherwise follow a URL that answers nothing)."""
    url = os.environ.get("SIGSENTRY_RUN_URL")
    if url:
        print(
            f"\n  SigSentry is running at {url}  (admin: {url}admin/ for staff users:"
            " manage.py createsuperuser)\n",
            flush=True,
        )


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _created_metrics_dir:
        shutil.rmtree(_created_metrics_dir, ignore_errors=True)
