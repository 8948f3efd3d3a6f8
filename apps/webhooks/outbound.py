"""One signed POST to a webhook URL, pinned to the addresses the SSRF guard checked.

`http.client` follows no redirects; the TLS certificate is verified against the
URL's host name while the socket goes to the checked address.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from dataclasses import dataclass

from apps.webhooks.urlsafety import Target

TIMEOUT_SECONDS = 10.0
USER_AGENT = "SigSentry-Webhooks/1.0"
MAX_RESPONSE_BYTES = 4096


@dataclass(frozen=True, slots=True)
class Outcome:
    status_code: int | None
    error: str  # empty on an HTTP answer; a short reason otherwise ("timeout", ...)

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, target: Target, address: str, timeout: float):
        super().__init__(target.host, target.port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, target: Target, address: str, timeout: float):
        self._tls = ssl.create_default_context()
        super().__init__(target.host, target.port, timeout=timeout, context=self._tls)
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)


def post(target: Target, body: bytes, headers: dict[str, str]) -> Outcome:
    """POST `body`; an Outcome with the status code or why there was none. Never raises."""
    timeout = TIMEOUT_SECONDS
    connection_class = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    error = "connection failed"
    for address in target.addresses:
        connection = connection_class(target, address, timeout)
        try:
            connection.request(
                "POST",
                target.path,
                body=body,
                headers={
                    "Content-Type": "application/json",
                    "User-Agent": USER_AGENT,
                    **headers,
                },
            )
            response = connection.getresponse()
            response.read(MAX_RESPONSE_BYTES)
            return Outcome(response.status, "")
        except TimeoutError:
            return Outcome(None, "timeout")
        except ssl.SSLError:
            error = "TLS error"
        except (OSError, http.client.HTTPException):
            error = "connection failed"
        finally:
            connection.close()
    return Outcome(None, error)
