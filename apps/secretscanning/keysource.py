"""Fetching GitHub's secret-scanning public keys into the file the endpoint reads.

`refresh` fetches the document, checks it and replaces the file atomically: used by
`manage.py refresh_github_keys` (cron, hourly) and by the endpoint when a report names a
key identifier the file does not have yet (GitHub rotated its key since the last run:
`refresh_on_demand`, at most once every 5 minutes, from GITHUB_SECRET_SCANNING_KEYS_URL).

These keys are what every leak report is verified with, so they come over HTTPS
only (plain HTTP just from this machine, a local mirror), from a host that
resolves to public addresses only, redirects are not followed, and
`GITHUB_TOKEN` is sent to GitHub's API (https://api.github.com) and nowhere else, a
mirror included. The timeout
bounds the whole fetch, so a server answering a byte at a time cannot hold it.
A bad answer, or a failed write, leaves the old file in place.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import socket
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from urllib.parse import SplitResult, urlsplit

from django.conf import settings
from django.core.cache import cache

from apps.secretscanning.github import parse_keys_document
from core import failopen
from core.deadline import DeadlinePassed, call_within
from core.net import is_public_address

GITHUB_API_HOST = "api.github.com"
GITHUB_KEYS_URL = f"https://{GITHUB_API_HOST}/meta/public_keys/secret_scanning"
MAX_DOCUMENT_BYTES = 1024 * 1024
CHUNK_BYTES = 64 * 1024


#: The endpoint's own fetch (`refresh_on_demand`): at most one per this many seconds, across
#: every process when the cache is shared (Redis), so made-up key identifiers cannot have
#: GitHub's API called more often (and this host rate-limited there); each within this
#: many seconds, as GitHub waits for the answer.
ON_DEMAND_EVERY = 300
ON_DEMAND_TIMEOUT = 5.0
_ON_DEMAND_MARK = "ss:github-keys:fetched-on-demand"

logger = logging.getLogger("sigsentry.secretscanning")


class KeySourceError(Exception):
    """The keys could not be fetched, were not GitHub's, or could not be written."""


def refresh(url: str, target: Path, timeout: float) -> int:
    """Fetch the keys at `url` into `target`; how many keys it holds, or KeySourceError."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise KeySourceError(f"--url has a bad port: {exc}") from exc
    loopback = parts.hostname in ("127.0.0.1", "::1", "localhost")
    if not parts.hostname or not (parts.scheme == "https" or (parts.scheme == "http" and loopback)):
        raise KeySourceError("--url must be an https URL (http only for this machine).")
    request = _request(url, parts)
    handlers: list = [_NoRedirects]
    if parts.scheme == "http":
        # A proxy from the environment would read this plain request, token included;
        # over https a proxy only tunnels (CONNECT) and the token stays inside TLS.
        handlers.append(urllib.request.ProxyHandler({}))
    opener = urllib.request.build_opener(*handlers)
    raw = _within(timeout, lambda: _fetch(opener, request, parts, port, timeout))
    count = _check_keys(raw)
    _write_atomically(target, raw)
    return count


def _request(url: str, parts: SplitResult) -> urllib.request.Request:
    """The GET for `url`, with `GITHUB_TOKEN` only if it goes to GitHub's API over HTTPS:
    never to a mirror, whoever runs it (found by the SSRF audit: any https URL, and plain
    http to this machine, got the token)."""
    request = urllib.request.Request(  # noqa: S310 (the scheme is checked by the caller)
        url,
        headers={"Accept": "application/json", "User-Agent": "SigSentry-refresh-github-keys"},
    )
    token = os.environ.get("GITHUB_TOKEN")
    if token and parts.scheme == "https" and parts.hostname == GITHUB_API_HOST:
        request.add_unredirected_header("Authorization", f"Bearer {token}")
    return request


def refresh_on_demand() -> bool:
    """A report names a key identifier the file lacks: fetch the keys now, unless that was
    done in the last ON_DEMAND_EVERY seconds (or no file or URL is configured). Whether
    the file was replaced; a failure is logged and the file stays as it was."""
    url, path = settings.GITHUB_SECRET_SCANNING_KEYS_URL, settings.GITHUB_SECRET_SCANNING_KEYS
    if not url or not path:
        return False
    if failopen.given_up():  # this request already waited for Redis once
        return False
    try:
        if not cache.add(_ON_DEMAND_MARK, 1, timeout=ON_DEMAND_EVERY):
            return False
    except Exception:  # the cache is down: nothing bounds the fetches, so none
        failopen.gave_up("github_keys_mark")
        logger.warning("GitHub secret scanning: cache unavailable, keys not fetched on demand")
        return False
    try:
        count = refresh(url, Path(path), ON_DEMAND_TIMEOUT)
    except KeySourceError as exc:
        logger.error("GitHub secret scanning: fetching the keys on demand failed: %s", exc)
        return False
    logger.warning("GitHub secret scanning: %d key(s) fetched on demand", count)
    return True


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: the keys come from the URL asked for, or not at all."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def _within(seconds: float, fetch):
    """fetch()'s result, or KeySourceError once `seconds` have passed.

    A socket timeout bounds each read only and a name lookup has none, so a server
    sending its TLS handshake, headers or body a byte at a time could hold a cron job
    for days. The fetch runs in a daemon thread of its own; one still running at the
    deadline is abandoned: it stops at its next chunk of body, or ends with the process.
    """
    try:
        return call_within(seconds, fetch, "refresh-github-keys")
    except DeadlinePassed:
        raise _too_slow(seconds) from None


def _too_slow(seconds: float) -> KeySourceError:
    return KeySourceError(f"Could not fetch the keys within {seconds:g} s (--timeout).")


def _fetch(opener, request, parts: SplitResult, port: int, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    if parts.scheme == "https":
        _refuse_non_public(parts.hostname, port)
    body = bytearray()
    try:
        with opener.open(request, timeout=timeout) as response:
            # read1: at most one socket read per chunk, so the deadline is checked between.
            while chunk := response.read1(CHUNK_BYTES):
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise KeySourceError("The answer is too large to be GitHub's key list.")
                if time.monotonic() > deadline:  # the command has given up on this fetch
                    raise _too_slow(timeout)
    except urllib.error.HTTPError as exc:  # an answer but 200 (a redirect too): body unread
        exc.close()  # its connection, which the exception would hold until collected
        raise KeySourceError(f"Could not fetch the keys: {exc}") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise KeySourceError(f"Could not fetch the keys: {exc}") from exc
    return bytes(body)


def _refuse_non_public(host: str, port: int) -> None:
    """An https URL may not lead inside (loopback, private, link-local such as the cloud
    metadata address, reserved...): GITHUB_TOKEN would go there, and an internal answer
    would become the keys leak reports are verified with.

    urllib resolves the name again to connect, so DNS answering differently then
    (rebinding) is not guarded against: the URL is the operator's, not a user's, and
    pinning the address would take a connection class of our own. Behind an https proxy
    the proxy resolves the name; this machine's answer is still checked.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise KeySourceError(f"Could not resolve {host}: {exc}") from exc
    if not infos or not all(is_public_address(info[4][0]) for info in infos):
        raise KeySourceError(
            f"--url's host {host} resolves to a non-public address (loopback, private, "
            "link-local, reserved...): https is for GitHub, plain http for this machine."
        )


def _check_keys(raw: bytes) -> int:
    """How many keys the document has; KeySourceError unless it is a sane GitHub answer."""
    try:
        keys = parse_keys_document(raw)
    except ValueError as exc:
        raise KeySourceError(f"Not GitHub's public_keys document: {exc}") from exc
    # parse_keys_document (also the web process's reader) lets the last of two entries
    # with one identifier win; GitHub never sends that, so one of them is not GitHub's key.
    entries = json.loads(raw)["public_keys"]
    counts = Counter(entry["key_identifier"] for entry in entries)
    duplicated = [identifier[:80] for identifier, n in counts.items() if n > 1]
    if duplicated:
        raise KeySourceError(f"key_identifier {duplicated[0]} appears more than once.")
    # GitHub always marks the key it signs with now; without one this is a stale or
    # made-up list.
    if not any(entry.get("is_current") is True for entry in entries):
        raise KeySourceError("No key is marked is_current: true.")
    return len(keys)


def _write_atomically(target: Path, raw: bytes) -> None:
    """Replace `target` with `raw` in one step; on failure the old file stays, no temp file."""
    tmp_name = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False, suffix=".tmp") as tmp:
            tmp_name = tmp.name
            tmp.write(raw)
            tmp.flush()
            # On disk before the rename: after a crash, the new file whole or the old one.
            os.fsync(tmp.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
    except OSError as exc:
        if tmp_name:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
        raise KeySourceError(f"Could not write {target}: {exc}") from exc
