"""GitHub-style signing keys made by the tests: GitHub's document format, real ECDSA."""

from __future__ import annotations

import base64
import contextlib
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


@dataclass
class SigningKey:
    identifier: str
    private: ec.EllipticCurvePrivateKey

    @classmethod
    def new(cls, identifier: str, curve=None) -> SigningKey:
        return cls(identifier, ec.generate_private_key(curve or ec.SECP256R1()))

    def public_pem(self) -> str:
        return (
            self.private.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def sign(self, body: bytes) -> str:
        return base64.b64encode(self.private.sign(body, ec.ECDSA(hashes.SHA256()))).decode()

    def headers(self, body: bytes) -> dict[str, str]:
        return {
            "HTTP_GITHUB_PUBLIC_KEY_IDENTIFIER": self.identifier,
            "HTTP_GITHUB_PUBLIC_KEY_SIGNATURE": self.sign(body),
        }


def keys_document(*keys: SigningKey) -> str:
    return json.dumps(
        {
            "public_keys": [
                {"key_identifier": k.identifier, "key": k.public_pem(), "is_current": i == 0}
                for i, k in enumerate(keys)
            ]
        }
    )


def write_keys(path: Path, *keys: SigningKey) -> Path:
    path.write_text(keys_document(*keys))
    return path


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]):
    """A local HTTP server for `handler`; yields the URL GitHub's keys would be at."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/meta/public_keys/secret_scanning"
    finally:
        server.shutdown()
        server.server_close()
