"""Filling a new column of a busy table from a migration, a batch per transaction.

A migration runs in one transaction by default, so an `UPDATE` of every row after an
`AddField` holds the table's ACCESS EXCLUSIVE lock (taken by the `ALTER TABLE`) until the
last row is written: every key check waits that long, whatever `lock_timeout` says (it
bounds the wait for a lock, not its holding). A rollout audit measured 315 s on a million
keys. A migration that fills a column is `atomic = False`: the `ALTER TABLE` commits at
once, then the rows are written a batch at a time, each batch its own short transaction,
and the table is never held for more than one batch. Safe to run again: only rows still
unfilled are written.
"""

from __future__ import annotations

from django.db import models, transaction
from django.db.models import OuterRef, Subquery, Value
from django.db.models.functions import Coalesce

BATCH = 2000


def in_batches(rows: models.QuerySet, values: dict, *, batch: int = BATCH) -> int:
    """Update `rows` with `values`, `batch` rows per transaction, in primary-key order;
    the number updated. `rows` must stop matching a row once it is updated (a filter on
    the column written), or it is visited again: each batch starts past the last one."""
    done = 0
    after = None
    while True:
        with transaction.atomic(using=rows.db):
            page = rows.order_by("pk")
            if after is not None:
                page = page.filter(pk__gt=after)
            ids = list(page.values_list("pk", flat=True)[:batch])
            if not ids:
                return done
            done += rows.model._default_manager.using(rows.db).filter(pk__in=ids).update(**values)
            after = ids[-1]


def creators_addresses(model: type[models.Model], user_model: type[models.Model]) -> None:
    """`created_by_email` (core.creators) of the rows that have none yet: their creator's
    address as it is now; and none behind a creator deleted meanwhile (the release before a
    migration that adds the column deletes accounts without emptying it). Run again in the
    next release, it fills what the release before inserted while both served."""
    email = user_model._default_manager.filter(pk=OuterRef("created_by_id")).values("email")[:1]
    # A creator deleted while the batch runs leaves NULL: the column is NOT NULL.
    in_batches(
        model._default_manager.filter(created_by__isnull=False, created_by_email=""),
        {"created_by_email": Coalesce(Subquery(email), Value(""))},
    )
    in_batches(
        model._default_manager.filter(created_by__isnull=True).exclude(created_by_email=""),
        {"created_by_email": ""},
    )
