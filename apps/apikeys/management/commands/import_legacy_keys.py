"""`manage.py import_legacy_keys PATH.csv` (SPEC §7): all-or-nothing import of legacy keys."""

from __future__ import annotations

import sys
from pathlib import Path

from django.core.management.base import CommandError

from apps.apikeys.legacy import (
    HEADER,
    LegacyImportError,
    decode_csv_bytes,
    import_legacy_keys,
    parse_legacy_csv,
)
from core.management.base import BaseCommand

#: The path that means standard input: keys piped from a secret store never touch the disk.
STDIN = "-"


class Command(BaseCommand):
    help = (
        f"Import legacy API keys (tb_..., ss_live_...) from a UTF-8 CSV with the header "
        f"{','.join(HEADER)}. permissions is space-separated (empty = all four). Every row "
        "is checked first: one bad row aborts the import and nothing is written. Keys "
        "already imported are skipped. Only a digest of each key is stored; delete the "
        "CSV afterwards, it holds the keys in clear (or pipe it in: PATH '-')."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", help="the CSV file, or - to read it from standard input")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="check every row and count what would be imported and skipped; write nothing",
        )

    def handle(self, *args, path: str, dry_run: bool = False, **options):
        data = self._read(path)
        try:
            specs = parse_legacy_csv(decode_csv_bytes(data))
            result = import_legacy_keys(specs=specs, dry_run=dry_run)
        except LegacyImportError as exc:
            raise CommandError(exc.summary()) from exc
        if dry_run:
            self.say(
                f"Dry run, nothing written: would import {result.imported}, "
                f"skip {result.skipped} (already imported)."
            )
        else:
            self.say(f"Imported {result.imported}, skipped {result.skipped} (already imported).")

    @staticmethod
    def _read(path: str) -> bytes:
        if path == STDIN:
            return sys.stdin.buffer.read()
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror or exc}") from exc
