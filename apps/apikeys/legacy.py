"""Importing legacy keys (`tb_`, `ss_live_`) for operators (SPEC §2.3, §7).

Two steps, so nothing is written unless everything is valid:

* `parse_legacy_csv` reads the operator's CSV (header
  ``key,project_id,name,permissions``) and validates EVERY row — key shape,
  project, name, permissions, duplicates within the file — collecting each bad
  row's line number and reason;
* `import_legacy_keys` writes the valid rows in one transaction, skipping keys
  whose digest is already stored, with one `legacy_keys.imported` audit event
  per organization that received keys.

Invariants: the plaintext key lives only in memory (`LegacyKeySpec.key`, kept
out of its repr); the row stores `keyformat.digest()` and
`keyformat.display_prefix()` like every other key. A key with fewer than
`keyformat.LEGACY_MIN_SECRET_LENGTH` characters after its prefix is a bad row:
too weak to keep. Error messages name the line and the reason and never echo a
cell that could hold a key (only UUIDs and permission-shaped words are quoted
back).
"""

from __future__ import annotations

import csv
import io
import logging
import re
import unicodedata
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.apikeys import keyformat
from apps.apikeys.models import ApiKey, KeyScope, KeyType
from apps.apikeys.validators import clean_key_name
from apps.audit.models import AuditEvent
from apps.audit.services import Action, record_event
from apps.projects.models import Project
from core.errors import ValidationFailed
from core.listing import first_few
from core.permissions import ALL_PERMISSIONS, normalize_permissions
from core.queries import filter_in_chunks

logger = logging.getLogger("sigsentry.apikeys")

HEADER = ("key", "project_id", "name", "permissions")
MAX_NAME_LENGTH = 100
#: Bad rows listed in one error; the count of the rest is given.
MAX_REPORTED_ERRORS = 20
_PERMISSION_SHAPE = re.compile(r"[a-z_]{1,20}:[a-z_]{1,20}")


#: Rows per INSERT of an import.
IMPORT_BATCH_ROWS = 1000


class LegacyImportError(Exception):
    """The import was refused; nothing was written. `errors` is [(line or None, reason)]."""

    def __init__(self, errors: list[tuple[int | None, str]]):
        self.errors = errors
        super().__init__(self.summary())

    def summary(self) -> str:
        shown = [f"line {line}: {reason}" if line else reason for line, reason in self.errors]
        shown = first_few(shown, MAX_REPORTED_ERRORS, more="more bad row(s)")
        return "Nothing was imported. " + "; ".join(shown)


@dataclass(frozen=True, slots=True)
class LegacyKeySpec:
    """One legacy key to import. `key` is the plaintext: in memory only, never in a repr."""

    key: str = field(repr=False)
    project: Project
    name: str
    permissions: list[str]
    line: int | None = None


@dataclass(frozen=True, slots=True)
class ImportResult:
    imported: int
    skipped: int


def decode_csv_bytes(data: bytes) -> str:
    """UTF-8 text of the file, without a byte-order mark; LegacyImportError otherwise."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise LegacyImportError([(line, "the file is not valid UTF-8")]) from exc


def _as_uuid(raw: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw.strip())
    except ValueError:
        return None


def _clean_project_id(raw: str, projects: dict[uuid.UUID, Project]) -> Project | str:
    project_id = _as_uuid(raw)
    if project_id is None:
        return "project_id is not a UUID"
    project = projects.get(project_id)
    if project is None:
        return f"project {project_id} does not exist"
    return project


def _key_error(key: str) -> str | None:
    """Why `key` cannot be imported, in words that never quote it (nor its length)."""
    shape = (
        f"tb_ or ss_live_ followed by {keyformat.LEGACY_MIN_SECRET_LENGTH} to 200 letters, "
        "digits, _ or -"
    )
    if not keyformat.is_legacy_key(key):
        return f"key is not a legacy key ({shape})"
    if keyformat.legacy_key_too_short(key):
        return (
            f"key is too short to keep: a legacy key needs at least "
            f"{keyformat.LEGACY_MIN_SECRET_LENGTH} characters after its prefix "
            "(issue a new key to its owner instead)"
        )
    return None


def _name_error(name: str) -> str | None:
    if not name:
        return "name is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"name is longer than {MAX_NAME_LENGTH} characters"
    if any(unicodedata.category(char) == "Cc" for char in name):
        return "name contains control characters"
    # What the API refuses too (found by a fuzzing audit: a right-to-left override, a
    # zero-width space and a key in a name were imported, shown to every member as they are).
    try:
        clean_key_name(name)
    except ValidationFailed as exc:
        [message] = exc.details["fields"]["name"]
        return f"name refused: {message}"
    # clean_key_name finds only keys with a checksum; in this file a legacy key is the
    # likeliest thing to land in a name (a shifted column, a key pasted as its own name).
    # Only a run as long as a key this import takes: `ss_live_dashboard` is a name.
    if keyformat.IMPORTABLE_LEGACY_KEY.search(name):
        return (
            "name refused: it holds a legacy key (tb_... or ss_live_...); a name is shown in "
            "the dashboard and the logs"
        )
    return None


def _clean_permissions(words: Sequence[str]) -> list[str] | str:
    """Known permissions in canonical order (none = all four), or the reason they are not."""
    if not words:
        return list(ALL_PERMISSIONS)
    unknown = [w for w in words if w not in ALL_PERMISSIONS]
    if unknown:
        # Quote only permission-shaped words: a shifted column could hold a key.
        quoted = ", ".join(f"'{w}'" for w in unknown if _PERMISSION_SHAPE.fullmatch(w))
        return f"unknown permission {quoted or '(not shown)'}; known: {' '.join(ALL_PERMISSIONS)}"
    return normalize_permissions(list(words))


def _permissions_error(words: Sequence[str]) -> str | None:
    cleaned = _clean_permissions(words)
    return cleaned if isinstance(cleaned, str) else None


def _rows(text: str) -> list[tuple[int, list[str]]]:
    """(first line of the record, cells) for every non-blank record after the header."""
    if not text.strip():
        raise LegacyImportError(
            [(None, f"the file is empty; expected the header {','.join(HEADER)}")]
        )
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records: list[tuple[int, list[str]]] = []
    previous_end = 0
    try:
        header = next(reader)
        if tuple(header) != HEADER:
            raise LegacyImportError([(1, f"the header must be exactly {','.join(HEADER)}")])
        previous_end = reader.line_num
        for cells in reader:
            if any(cell.strip() for cell in cells):
                records.append((previous_end + 1, cells))
            previous_end = reader.line_num
    except csv.Error as exc:
        raise LegacyImportError([(previous_end + 1, "the CSV is malformed")]) from exc
    return records


def parse_legacy_csv(text: str) -> list[LegacyKeySpec]:
    """Validate every row of the CSV; LegacyImportError lists each bad row's line and reason.

    Line 1 is the header, line 2 the first data row. A key that appears twice
    in the file is an error (which project would it belong to?). Projects are
    read in bulk, not per row.
    """
    records = _rows(text)
    wanted = {_as_uuid(cells[1]) for _, cells in records if len(cells) == len(HEADER)}
    wanted.discard(None)
    projects = {p.id: p for p in filter_in_chunks(Project.objects.all(), "id", list(wanted))}

    errors: list[tuple[int | None, str]] = []
    specs: list[LegacyKeySpec] = []
    first_line_of: dict[str, int] = {}
    for line, cells in records:
        if len(cells) != len(HEADER):
            errors.append((line, f"expected {len(HEADER)} columns, found {len(cells)}"))
            continue
        raw_key, raw_project, raw_name, raw_permissions = cells
        key, name = raw_key.strip(), raw_name.strip()
        project = _clean_project_id(raw_project, projects)
        reasons = [
            reason
            for reason in (
                _key_error(key),
                f"the same key as line {first_line_of[key]}" if key in first_line_of else None,
                project if isinstance(project, str) else None,
                _name_error(name),
                _permissions_error(raw_permissions.split()),
            )
            if reason
        ]
        first_line_of.setdefault(key, line)
        if reasons:
            errors.extend((line, reason) for reason in reasons)
            continue
        specs.append(
            LegacyKeySpec(
                key=key,
                project=project,
                name=name,
                permissions=_clean_permissions(raw_permissions.split()),
                line=line,
            )
        )
    if errors:
        raise LegacyImportError(errors)
    return specs


def import_legacy_keys(*, specs: Sequence[LegacyKeySpec], dry_run: bool = False) -> ImportResult:
    """Store the legacy keys in one transaction; keys already stored are skipped and counted.

    Each row: `legacy=True`, `type=secret`, `scope=project`, the project's
    organization, no creator, only the digest and display prefix of the key.
    One audit event (actor `system`) per organization that received keys.
    A concurrent import of the same key aborts this one (nothing written).
    `dry_run` counts what would be imported and skipped, and writes nothing.
    """
    errors = [
        (spec.line, reason)
        for spec in specs
        for reason in (
            _key_error(spec.key),
            _name_error(spec.name),
            _permissions_error(spec.permissions),
        )
        if reason
    ]
    digests = [keyformat.digest(spec.key) for spec in specs]
    if len(set(digests)) != len(digests):
        errors.append((None, "the same key appears twice"))
    if errors:
        raise LegacyImportError(errors)
    now = timezone.now()
    try:
        with transaction.atomic():
            stored = {
                k.digest for k in filter_in_chunks(ApiKey.objects.only("digest"), "digest", digests)
            }
            new_rows: list[ApiKey] = []
            by_org: dict[Any, dict[str, Any]] = defaultdict(
                lambda: {"imported": 0, "skipped": 0, "projects": set()}
            )
            for spec, digest in zip(specs, digests, strict=True):
                counts = by_org[spec.project.organization_id]
                if digest in stored:
                    counts["skipped"] += 1
                    continue
                counts["imported"] += 1
                counts["projects"].add(str(spec.project.id))
                new_rows.append(
                    ApiKey(
                        organization_id=spec.project.organization_id,
                        project=spec.project,
                        type=KeyType.SECRET,
                        scope=KeyScope.PROJECT,
                        legacy=True,
                        name=spec.name,
                        prefix=keyformat.display_prefix(spec.key),
                        digest=digest,
                        permissions=_clean_permissions(spec.permissions),
                        created_at=now,
                    )
                )
            if dry_run:
                return ImportResult(imported=len(new_rows), skipped=len(specs) - len(new_rows))
            # In batches (one transaction still: all or nothing): one INSERT of 200,000 rows
            # took ~1 GB on PostgreSQL (found by a commands audit).
            ApiKey.objects.bulk_create(new_rows, batch_size=IMPORT_BATCH_ROWS)
            for organization_id, counts in by_org.items():
                if not counts["imported"]:
                    continue
                projects = sorted(counts["projects"])
                record_event(
                    action=Action.LEGACY_KEYS_IMPORTED,
                    organization_id=organization_id,
                    project_id=projects[0] if len(projects) == 1 else None,
                    actor_type=AuditEvent.ActorType.SYSTEM,
                    target_type="legacy_keys",
                    target_label=f"{counts['imported']} legacy key(s)",
                    details={
                        "imported": counts["imported"],
                        "skipped": counts["skipped"],
                        "projects": projects,
                    },
                )
    except IntegrityError as exc:
        wanted = {spec.project.pk for spec in specs}
        gone = wanted - set(Project.objects.filter(pk__in=wanted).values_list("pk", flat=True))
        if gone:  # deleted since the file was read (found by an integrity audit)
            raise LegacyImportError(
                [(None, f"project {pk} was deleted during the import") for pk in sorted(gone)]
            ) from exc
        if not filter_in_chunks(ApiKey.objects.only("pk"), "digest", digests):
            raise  # no key stored meanwhile: another broken constraint, not a concurrent import
        raise LegacyImportError(
            [(None, "another import stored one of these keys at the same time; run it again")]
        ) from exc
    imported = len(new_rows)
    logger.info("imported %d legacy key(s), skipped %d", imported, len(specs) - imported)
    return ImportResult(imported=imported, skipped=len(specs) - imported)
