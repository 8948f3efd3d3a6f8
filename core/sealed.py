"""Secrets the service must read back (TOTP secrets, webhook signing secrets), sealed at rest.

* Format: a Fernet token (`cryptography`: AES-128-CBC + HMAC-SHA256) under a key derived
  from SECRET_KEY with HKDF-SHA256 and a label per purpose, so no derived key serves two
  purposes. Never stored: the plaintext, or a derived key.
* Rotation: a token sealed under a key of SECRET_KEY_FALLBACKS still opens, so a new
  SECRET_KEY keeps every stored secret readable; `manage.py reseal_secrets` seals each one
  again under the current key (the columns apps register with `register_column`), after
  which the old key can leave the fallbacks.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


class Unreadable(Exception):
    """Sealed under a key that is neither SECRET_KEY nor one of its fallbacks (or altered)."""


@functools.lru_cache(maxsize=32)
def _fernet(purpose: bytes, secret_key: str) -> Fernet:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose)
    return Fernet(base64.urlsafe_b64encode(hkdf.derive(secret_key.encode())))


def _keys(purpose: bytes) -> MultiFernet:
    """The current key first (it seals), then the fallbacks (they only open)."""
    secret_keys = (settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS)
    return MultiFernet([_fernet(purpose, key) for key in secret_keys])


def seal(purpose: bytes, secret: str) -> str:
    return _fernet(purpose, settings.SECRET_KEY).encrypt(secret.encode()).decode()


def unseal(purpose: bytes, token: str) -> str:
    try:
        return _keys(purpose).decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise Unreadable() from exc


def reseal(purpose: bytes, token: str) -> str | None:
    """The token sealed again under the current SECRET_KEY, or None if it already is."""
    try:
        _fernet(purpose, settings.SECRET_KEY).decrypt(token.encode())
        return None
    except InvalidToken:
        pass
    try:
        return _keys(purpose).rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise Unreadable() from exc


@dataclass(frozen=True)
class SealedColumn:
    model: type
    field: str
    purpose: bytes


#: Every column holding sealed secrets, registered by its app (`register_column`).
COLUMNS: list[SealedColumn] = []


def register_column(model: type, field: str, purpose: bytes) -> None:
    """Declare a model's column of sealed secrets, for `manage.py reseal_secrets`."""
    column = SealedColumn(model, field, purpose)
    if column not in COLUMNS:
        COLUMNS.append(column)


@dataclass
class ResealCount:
    column: SealedColumn
    resealed: int = 0
    current: int = 0
    #: Primary keys of rows no key of SECRET_KEY and its fallbacks opens (left as they are).
    unreadable: list = field(default_factory=list)
    #: The column's rows when its turn began (rows added since are counted as they are read).
    total: int = 0

    @property
    def checked(self) -> int:
        return self.resealed + self.current + len(self.unreadable)


def reseal_stored(
    batch: int = 500, progress: Callable[[ResealCount], None] | None = None
) -> list[ResealCount]:
    """Seal every registered column's secrets again under the current SECRET_KEY.

    Row by row, each written by a conditional UPDATE naming the token it read, so a secret
    replaced meanwhile (a new two-factor set-up) is never overwritten with the old one. Safe
    to repeat and to run beside the web processes and workers. `progress` is given the
    column's count after each `batch` rows."""
    counts = []
    for column in COLUMNS:
        manager = column.model._default_manager
        count = ResealCount(column, total=manager.count())
        last = None
        while True:
            rows = manager.order_by("pk")
            if last is not None:
                rows = rows.filter(pk__gt=last)
            page = list(rows.values_list("pk", column.field)[:batch])
            if not page:
                break
            for pk, token in page:
                try:
                    fresh = reseal(column.purpose, token)
                except Unreadable:
                    count.unreadable.append(pk)
                    continue
                if fresh is None:
                    count.current += 1
                elif manager.filter(pk=pk, **{column.field: token}).update(**{column.field: fresh}):
                    count.resealed += 1
            last = page[-1][0]
            if progress is not None:
                progress(count)
        counts.append(count)
    return counts
