"""`python manage.py refresh_github_keys`: fetch GitHub's secret-scanning public keys.

Writes GitHub's JSON document to `GITHUB_SECRET_SCANNING_KEYS` (or `--output`)
after checking that every key is an ECDSA P-256 public key, that no two share a
`key_identifier` and that one is marked `is_current`; the file is replaced
atomically, and a bad answer (or a failed write) leaves the old file in place.
Run it from cron hourly; the endpoint also fetches the keys itself when a report
names a key the file does not have yet (`apps.secretscanning.keysource`, where
the fetch's safeguards are described).
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError

from apps.secretscanning.keysource import GITHUB_KEYS_URL, KeySourceError, refresh
from core.management.base import BaseCommand
from core.management.flags import seconds_at_most


class Command(BaseCommand):
    help = "Fetch GitHub's secret-scanning public keys into GITHUB_SECRET_SCANNING_KEYS."

    def add_arguments(self, parser):
        parser.add_argument(
            "--url",
            default=GITHUB_KEYS_URL,
            help="Where to fetch the keys: an https URL (plain http only on this machine, a "
            "local mirror). Default: GitHub's API.",
        )
        parser.add_argument(
            "--output", default="", help="File to write (default: GITHUB_SECRET_SCANNING_KEYS)."
        )
        parser.add_argument(
            "--timeout",
            type=seconds_at_most(300),
            default=10.0,
            help="Seconds for the whole fetch, name lookup to last byte (default: 10).",
        )

    def handle(self, *args, url, output, timeout, **options):
        output = output or settings.GITHUB_SECRET_SCANNING_KEYS
        if not output:
            raise CommandError("Set GITHUB_SECRET_SCANNING_KEYS or pass --output.")
        target = Path(output)
        try:
            count = refresh(url, target, timeout)
        except KeySourceError as exc:
            raise CommandError(str(exc)) from exc
        self.say(f"{count} key(s) written to {target}")
