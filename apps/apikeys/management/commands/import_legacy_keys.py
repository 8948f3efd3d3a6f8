"""`manage.py import_legacy_keys PATH.csv` (SPEC §7): all-or-nothing import of legacy keys."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from apps.apikeys.legacy import (
    HEADER,
    LegacyImportError,
    decode_csv_bytes,
    import_legacy_keys,
    parse_legacy_csv,
)


class Command(BaseCommand):
    help = (
        f"Import legacy API keys (tb_..., ss_live_...) from a UTF-8 CSV with the header "
        f"{','.join(HEADER)}. permissions is space-separated (empty = all four). Every row "
        "is checked first: one bad row aborts the import and nothing is written. Keys "
        "already imported are skipped. Only a digest of each key is stored; delete the "
        "CSV afterwards, it holds the keys in clear."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", help="the CSV file")

    def handle(self, *args, path: str, **options):
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror or exc}") from exc
        try:
            specs = parse_legacy_csv(decode_csv_bytes(data))
            result = import_legacy_keys(specs=specs)
        except LegacyImportError as exc:
            raise CommandError(exc.summary()) from exc
        self.stdout.write(
            f"Imported {result.imported}, skipped {result.skipped} (already imported)."
        )
