"""`python manage.py refresh_github_keys`: fetch GitHub's secret-scanning public keys.

Writes GitHub's JSON document to `GITHUB_SECRET_SCANNING_KEYS` (or `--output`)
after checking that every key is an ECDSA P-256 public key; the file is
replaced atomically, and a bad answer leaves the old file in place. Run it from
cron (daily is plenty: GitHub announces rotations in advance).

These keys are what every leak report is verified with, so they come over HTTPS
only (plain HTTP just from this machine, a local mirror), redirects are not
followed, and `GITHUB_TOKEN` is sent to the URL's own host and nowhere else.
"""

from __future__ import annotations

import os
import tempfile
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.secretscanning.github import parse_keys_document

GITHUB_KEYS_URL = "https://api.github.com/meta/public_keys/secret_scanning"
MAX_DOCUMENT_BYTES = 1024 * 1024


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: the keys come from the URL asked for, or not at all."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class Command(BaseCommand):
    help = "Fetch GitHub's secret-scanning public keys into GITHUB_SECRET_SCANNING_KEYS."

    def add_arguments(self, parser):
        parser.add_argument("--url", default=GITHUB_KEYS_URL, help="Where to fetch the keys.")
        parser.add_argument(
            "--output", default="", help="File to write (default: GITHUB_SECRET_SCANNING_KEYS)."
        )
        parser.add_argument("--timeout", type=float, default=10.0)

    def handle(self, *args, url, output, timeout, **options):
        output = output or settings.GITHUB_SECRET_SCANNING_KEYS
        if not output:
            raise CommandError("Set GITHUB_SECRET_SCANNING_KEYS or pass --output.")
        parts = urlsplit(url)
        loopback = parts.hostname in ("127.0.0.1", "::1", "localhost")
        if not parts.hostname or not (
            parts.scheme == "https" or (parts.scheme == "http" and loopback)
        ):
            raise CommandError("--url must be an https URL (http only for this machine).")
        request = urllib.request.Request(  # noqa: S310 (the scheme is checked above)
            url,
            headers={"Accept": "application/json", "User-Agent": "SigSentry-refresh-github-keys"},
        )
        token = os.environ.get("GITHUB_TOKEN")
        if token:
            request.add_unredirected_header("Authorization", f"Bearer {token}")
        handlers: list = [_NoRedirects]
        if parts.scheme == "http":
            # A proxy from the environment would read this plain request, token included;
            # over https a proxy only tunnels (CONNECT) and the token stays inside TLS.
            handlers.append(urllib.request.ProxyHandler({}))
        opener = urllib.request.build_opener(*handlers)
        try:
            with opener.open(request, timeout=timeout) as response:
                raw = response.read(MAX_DOCUMENT_BYTES + 1)
        except OSError as exc:
            raise CommandError(f"Could not fetch the keys: {exc}") from exc
        if len(raw) > MAX_DOCUMENT_BYTES:
            raise CommandError("The answer is too large to be GitHub's key list.")
        try:
            keys = parse_keys_document(raw)
        except ValueError as exc:
            raise CommandError(f"Not GitHub's public_keys document: {exc}") from exc
        target = Path(output)
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False, suffix=".tmp") as tmp:
            tmp.write(raw)
        os.chmod(tmp.name, 0o644)
        os.replace(tmp.name, target)
        self.stdout.write(f"{len(keys)} key(s) written to {target}")
