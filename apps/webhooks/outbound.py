"""One signed POST to a webhook URL, pinned to the addresses the SSRF guard checked.

`http.client` follows no redirects; the TLS certificate is verified against the
URL's host name while the socket goes to the checked address. A socket timeout only
bounds each read, so a receiver that answers a byte at a time (or sends its TLS
handshake that way) could hold a worker for hours: the whole attempt has one
deadline, and a timer cuts the socket then. The connection keeps its socket where
the timer can reach it from the moment it is connected, the TLS handshake included,
and checks the deadline once more after connecting, in case the timer fired while
there was nothing to cut yet.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time
from dataclasses import dataclass

from django.utils.http import parse_http_date_safe

from apps.webhooks.urlsafety import Target

TIMEOUT_SECONDS = 10.0
USER_AGENT = "SigSentry-Webhooks/1.0"
MAX_RESPONSE_BYTES = 4096


@dataclass(frozen=True, slots=True)
class Outcome:
    status_code: int | None
    error: str  # empty on an HTTP answer; a short reason otherwise ("timeout", ...)
    #: Seconds a 429 or 503 asked to be left alone (`Retry-After`), if it said.
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class _PinnedHTTPConnection(http.client.HTTPConnection):
    #: The connected socket, for the timer to cut. Not `sock`: when the answer closes the
    #: connection (`Connection: close`, HTTP/1.0) http.client hands the socket to the
    #: response and sets `sock` to None, and a body trickled then was never cut (found by a
    #: workers audit: a worker held 16 minutes, its delivery sent by two others meanwhile).
    held: socket.socket | None = None

    def __init__(self, target: Target, address: str, timeout: float, fired: threading.Event):
        super().__init__(target.host, target.port, timeout=timeout)
        self._address = address
        self._fired = fired

    def connect(self) -> None:
        self.sock = self.held = socket.create_connection((self._address, self.port), self.timeout)
        _check_deadline(self._fired)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    held: socket.socket | None = None  # as _PinnedHTTPConnection's

    def __init__(self, target: Target, address: str, timeout: float, fired: threading.Event):
        self._tls = ssl.create_default_context()
        super().__init__(target.host, target.port, timeout=timeout, context=self._tls)
        self._address = address
        self._fired = fired

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        # Wrapped first, shaken hands after: the timer can cut a handshake in progress.
        self.sock = self.held = self._tls.wrap_socket(
            sock, server_hostname=self.host, do_handshake_on_connect=False
        )
        _check_deadline(self._fired)
        self.sock.do_handshake()


def _check_deadline(fired: threading.Event) -> None:
    if fired.is_set():
        raise TimeoutError("the attempt's deadline passed while connecting")


def _cut(
    connection: _PinnedHTTPConnection | _PinnedHTTPSConnection, fired: threading.Event
) -> None:
    """Unblock whatever the attempt is waiting for: the deadline has passed."""
    fired.set()
    if connection.held is not None:
        with contextlib.suppress(OSError):
            connection.held.shutdown(socket.SHUT_RDWR)


def post(
    target: Target, body: bytes, headers: dict[str, str], *, started: float | None = None
) -> Outcome:
    """POST `body`; an Outcome with the status code or why there was none. Never raises.

    Every address together, from connecting to the answer's first bytes, gets what is left
    of TIMEOUT_SECONDS since `started` (`time.monotonic()`; now by default): the attempt's
    host lookup comes out of the same 10 s."""
    deadline = (time.monotonic() if started is None else started) + TIMEOUT_SECONDS
    connection_class = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    error = "connection failed"
    for address in target.addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return Outcome(None, "timeout")
        fired = threading.Event()
        connection = connection_class(target, address, remaining, fired)
        cutoff = threading.Timer(remaining, _cut, args=(connection, fired))
        cutoff.daemon = True
        cutoff.start()
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
            if not fired.is_set():  # a cut answer can parse as a whole one
                return Outcome(response.status, "", _retry_after(response))
        except TimeoutError:
            return Outcome(None, "timeout")
        except ssl.SSLError:
            error = "TLS error"
        except (OSError, http.client.HTTPException):
            error = "connection failed"
        except ValueError:  # what http.client refuses to send (never expected: parse_url)
            error = "request failed"
        finally:
            cutoff.cancel()
            connection.close()
            if connection.held is not None:  # the response's since `Connection: close`
                connection.held.close()
        if fired.is_set():
            return Outcome(None, "timeout")
    return Outcome(None, error)


def _retry_after(response: http.client.HTTPResponse) -> float | None:
    """A 429's or 503's `Retry-After` (RFC 9110 §10.2.3) in seconds from now: a number of
    seconds or an HTTP date; None for anything else."""
    if response.status not in (429, 503):
        return None
    value = (response.getheader("Retry-After") or "").strip()
    if value.isascii() and value.isdigit():
        return float(value)
    when = parse_http_date_safe(value)
    return None if when is None else max(0.0, when - time.time())
