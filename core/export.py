"""Files to download from the dashboard: CSV and JSON Lines, streamed in bounded memory.

A download is read newest first in chunks by position (`newest_first`): one query of at
most `CHUNK_ROWS` rows each, the next one starting after the last row read, never an
OFFSET and never a server-side cursor. Behind PgBouncer in transaction mode (the default
settings, `DISABLE_SERVER_SIDE_CURSORS`) `QuerySet.iterator()` would fetch the whole result
into the worker's memory at its first row; each chunk here is its own short statement,
whatever the pooler. A download holds at most `MOST_ROWS` rows: gunicorn's sync worker
is busy for as long as the file streams, and is killed past its timeout (30 s).

CSV cells are neutralized against formula injection (OWASP "CSV Injection"): names of
keys, projects and organizations are chosen by users, and a spreadsheet runs a cell that
starts with `=`, `+`, `-`, `@`, a tab or a carriage return as a formula (`=HYPERLINK(…)`
sends what the sheet holds to another site). Such a cell gets a leading `'`: the cell is
text, shown with that quote (OWASP's advice; the name itself is never changed elsewhere).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from itertools import chain, islice
from typing import Any

from django.conf import settings
from django.db.models import Model, Q, QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render

from core import throttling
from core.errors import RateLimited
from core.times import wait_phrase

#: Rows per query: big enough that the round trips do not dominate, small enough that a
#: chunk of model instances is a few MB at most.
CHUNK_ROWS = 1000
#: Rows per download at most (100,000 events: 6 s of a worker on a loaded 2-core machine).
MOST_ROWS = 100_000

#: RFC 4180's media type; the first line names the columns.
CSV_TYPE = "text/csv; charset=utf-8; header=present"

#: First characters that make a spreadsheet read a cell as a formula (OWASP).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

#: Excel opens a CSV without a byte order mark in the machine's ANSI code page (a name
#: such as "Équipe" or "東京" turns into mojibake); with one it reads UTF-8. Python's
#: `utf-8-sig`, pandas and spreadsheets other than Excel skip it.
BOM = "\ufeff"


def csv_cell(value: Any) -> str:
    """One cell's text: nothing for None, and a `'` before a would-be formula."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    if text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def csv_lines(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[bytes]:
    """The CSV file (RFC 4180: CRLF, quoted where needed) in UTF-8 with a BOM, a chunk of
    lines at a time; every cell through `csv_cell`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    buffer.write(BOM)
    writer.writerow([csv_cell(name) for name in header])
    for count, row in enumerate(rows, start=1):
        writer.writerow([csv_cell(value) for value in row])
        if count % CHUNK_ROWS == 0:
            yield _drain(buffer)
    yield _drain(buffer)


def json_lines(objects: Iterable[Any]) -> Iterator[bytes]:
    """JSON Lines (one compact JSON object per line, `\\n` after each), a chunk at a time."""
    lines: list[str] = []
    for item in objects:
        lines.append(json.dumps(item, ensure_ascii=False, separators=(",", ":")))
        if len(lines) == CHUNK_ROWS:
            yield ("\n".join(lines) + "\n").encode()
            lines = []
    if lines:
        yield ("\n".join(lines) + "\n").encode()


def _drain(buffer: io.StringIO) -> bytes:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text.encode()


def newest_first(
    rows: QuerySet, *, chunk: int | None = None, most: int | None = None
) -> Iterator[Model]:
    """The rows of `rows` by `created_at` then `id`, newest first, read `chunk` at a time
    by position, `most` at most. One query per chunk (so a query per `chunk` rows, and one
    more for a count that is a whole number of chunks); what `rows` joins with
    `select_related` comes in the same query."""
    chunk = chunk or CHUNK_ROWS
    left = MOST_ROWS if most is None else most
    ordered = rows.order_by("-created_at", "-id")
    query = ordered
    while left > 0:
        batch = list(query[: min(chunk, left)])
        yield from batch
        left -= len(batch)
        if len(batch) < chunk:
            return
        query = older_than(ordered, batch[-1])


def older_than(rows: QuerySet, position: Any) -> QuerySet:
    """`rows` older than `position` (anything with `created_at` and `id`: a row, or its
    values) in the order newest first: the pages and downloads read by position. The plain
    bound on `created_at` beside the exact condition makes it a range of the index; with
    the OR alone PostgreSQL read every newer row and dropped it (the audit log's pages)."""
    return rows.filter(
        Q(created_at__lt=position.created_at)
        | Q(created_at=position.created_at, id__lt=position.id),
        created_at__lte=position.created_at,
    )


def read_ahead(rows: Iterator[Model]) -> Iterator[Model]:
    """`rows` with its first chunk read now, while the view runs: a database outage then is
    the 503 page (`core.middleware`), not a 200 cut short once the answer has started."""
    first = list(islice(rows, CHUNK_ROWS))
    return chain(first, rows)


def refused_download(request: HttpRequest) -> HttpResponse | None:
    """The 429 page when the caller has had `download_user` files this hour (each holds a
    worker for seconds); None, and one more counted, otherwise."""
    try:
        throttling.enforce("download_user", str(request.principal.user.pk))
    except RateLimited as exc:
        context = {
            "most": settings.THROTTLE_RATES["download_user"][0],
            "wait": wait_phrase(exc.retry_after),
        }
        response = render(request, "errors/429_downloads.html", context, status=429)
        response["Retry-After"] = str(exc.retry_after)
        return response
    return None


def download(
    content: Iterator[bytes], *, filename: str, content_type: str
) -> StreamingHttpResponse:
    """A streamed attachment. `filename` must be plain ASCII chosen by the code (ids, a
    date), never a user's name: it goes into the header as it is. Never cached: the file
    holds what only members may read. (`X-Content-Type-Options: nosniff` is on every answer:
    Django's SecurityMiddleware, `SECURE_CONTENT_TYPE_NOSNIFF`.)"""
    if not filename.isascii() or not all(c.isalnum() or c in "-_." for c in filename):
        raise ValueError(f"unsafe download name {filename!r}")
    response = StreamingHttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response


def stamp(now: datetime) -> str:
    """A moment for a file name: `20261207T140502Z`."""
    return now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
