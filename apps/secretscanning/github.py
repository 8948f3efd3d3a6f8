"""GitHub secret scanning's public keys and its report signature (SPEC §4.12).

GitHub signs each report's raw body with ECDSA P-256 / SHA-256 and names the
key in `Github-Public-Key-Identifier`; the base64 DER signature is in
`Github-Public-Key-Signature`. The keys are read from the JSON file named by
`GITHUB_SECRET_SCANNING_KEYS`, in GitHub's own format
(`{"public_keys": [{"key_identifier", "key", "is_current"}]}`), re-read when
the file changes (`refresh_github_keys` rewrites it). Anything missing,
unknown or wrong is "not verified": never an exception to the caller.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from django.conf import settings

logger = logging.getLogger("sigsentry.secretscanning")

KEY_ID_HEADER = "Github-Public-Key-Identifier"
SIGNATURE_HEADER = "Github-Public-Key-Signature"
MAX_SIGNATURE_LENGTH = 512

_cache: dict[str, Any] = {"stamp": None, "keys": {}}
_lock = threading.Lock()


def parse_keys_document(raw: bytes | str) -> dict[str, ec.EllipticCurvePublicKey]:
    """key_identifier → P-256 public key; ValueError if the document is not GitHub's format."""
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ValueError("not JSON") from exc
    entries = document.get("public_keys") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError("no public_keys list")
    keys: dict[str, ec.EllipticCurvePublicKey] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise ValueError("a public_keys entry is not an object")
        identifier, pem = entry.get("key_identifier"), entry.get("key")
        if not isinstance(identifier, str) or not identifier or not isinstance(pem, str):
            raise ValueError("a public_keys entry lacks key_identifier or key")
        try:
            key = load_pem_public_key(pem.encode())
        except ValueError as exc:
            raise ValueError(f"key {identifier[:80]} is not a PEM public key") from exc
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            raise ValueError(f"key {identifier[:80]} is not an ECDSA P-256 key")
        keys[identifier] = key
    return keys


def current_keys() -> dict[str, ec.EllipticCurvePublicKey]:
    """The configured keys, re-read when the file changes; {} when unset or unreadable."""
    path = settings.GITHUB_SECRET_SCANNING_KEYS
    if not path:
        return {}
    try:
        stat = os.stat(path)
    except OSError:
        logger.error("GITHUB_SECRET_SCANNING_KEYS: cannot read the keys file")
        return {}
    stamp = (path, stat.st_mtime_ns, stat.st_size)
    with _lock:
        if _cache["stamp"] != stamp:
            try:
                with open(path, "rb") as handle:
                    keys = parse_keys_document(handle.read())
            except (OSError, ValueError) as exc:
                logger.error("GITHUB_SECRET_SCANNING_KEYS: unusable keys file: %s", exc)
                keys = {}
            _cache["stamp"], _cache["keys"] = stamp, keys
        return _cache["keys"]


@dataclass(frozen=True, slots=True)
class Claim:
    """What a request's headers claim: a configured key and its signature of the body."""

    key: ec.EllipticCurvePublicKey
    signature: bytes

    def signed(self, body: bytes) -> bool:
        try:
            self.key.verify(self.signature, body, ec.ECDSA(hashes.SHA256()))
        except (ValueError, InvalidSignature):
            return False
        return True


def claim_of(key_id: str | None, signature_b64: str | None) -> Claim | None:
    """The claim of these headers, or None when no configured key could have signed: a
    body is then refused unread."""
    if not key_id or not signature_b64 or len(signature_b64) > MAX_SIGNATURE_LENGTH:
        return None
    key = current_keys().get(key_id)
    if key is None:
        return None
    try:
        return Claim(key, base64.b64decode(signature_b64, validate=True))
    except (binascii.Error, ValueError):
        return None


def knows(key_id: str) -> bool:
    """Whether the configured keys include `key_id`."""
    return key_id in current_keys()
