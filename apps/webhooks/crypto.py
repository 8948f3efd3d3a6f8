"""Webhook secrets: generation, encryption at rest, and the delivery signature.

* A secret is `whsec_` + 32 base62 characters from `secrets` (about 190 bits).
* At rest it is sealed (`core.sealed`: a Fernet token under a key derived from
  SECRET_KEY with its own HKDF label, so the key is used for nothing else). Those
  sealed under a key of SECRET_KEY_FALLBACKS still open, so rotating SECRET_KEY
  keeps every webhook signing.
* The signature is Stripe's scheme: `SigSentry-Signature: t=<unix>,v1=<hex>`,
  the hex HMAC-SHA256 of `"<t>.<raw body>"` with the secret as key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from core import sealed

SECRET_PREFIX = "whsec_"
SECRET_RANDOM_LENGTH = 32
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
#: The HKDF label of the webhook secrets' key (`core.sealed`).
SECRET_PURPOSE = b"sigsentry.webhooks.secret-at-rest.v1"
SIGNATURE_HEADER = "SigSentry-Signature"


def generate_secret() -> str:
    return SECRET_PREFIX + "".join(secrets.choice(_BASE62) for _ in range(SECRET_RANDOM_LENGTH))


def encrypt_secret(secret: str) -> str:
    return sealed.seal(SECRET_PURPOSE, secret)


def decrypt_secret(token: str) -> str:
    """The plaintext secret; `core.sealed.Unreadable` when no key of SECRET_KEY and its
    fallbacks sealed it."""
    return sealed.unseal(SECRET_PURPOSE, token)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The `SigSentry-Signature` header value for `body` sent at `timestamp`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"
