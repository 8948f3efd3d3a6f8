"""Webhook secrets: generation, encryption at rest, and the delivery signature.

* A secret is `whsec_` + 32 base62 characters from `secrets` (about 190 bits).
* At rest it is a Fernet token (AES-128-CBC + HMAC-SHA256, from `cryptography`)
  under a key derived from SECRET_KEY with HKDF-SHA256 (its own `info` label, so
  the key is used for nothing else). Rotating SECRET_KEY makes stored secrets
  unreadable: webhooks must then be created again.
* The signature is Stripe's scheme: `SigSentry-Signature: t=<unix>,v1=<hex>`,
  the hex HMAC-SHA256 of `"<t>.<raw body>"` with the secret as key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from functools import lru_cache

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

SECRET_PREFIX = "whsec_"
SECRET_RANDOM_LENGTH = 32
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_HKDF_INFO = b"sigsentry.webhooks.secret-at-rest.v1"
SIGNATURE_HEADER = "SigSentry-Signature"


def generate_secret() -> str:
    return SECRET_PREFIX + "".join(secrets.choice(_BASE62) for _ in range(SECRET_RANDOM_LENGTH))


@lru_cache(maxsize=4)
def _fernet(secret_key: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
        secret_key.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt_secret(secret: str) -> str:
    return _fernet(settings.SECRET_KEY).encrypt(secret.encode()).decode()


def decrypt_secret(token: str) -> str:
    """The plaintext secret; raises cryptography's InvalidToken if SECRET_KEY changed."""
    return _fernet(settings.SECRET_KEY).decrypt(token.encode()).decode()


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The `SigSentry-Signature` header value for `body` sent at `timestamp`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"
