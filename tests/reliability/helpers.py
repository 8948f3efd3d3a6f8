"""Helpers for the reliability tests: a TCP proxy to cut the database, and plain HTTP calls.

Everything here talks to 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


class TcpProxy:
    """Forwards 127.0.0.1:<port> to an upstream address, in threads.

    `stop()` closes the listening socket and every forwarded connection, so the
    upstream becomes unreachable for anyone behind the proxy (established
    connections break, new ones are refused). `start()` again listens on the
    same port.
    """

    def __init__(self, upstream: tuple[str, int], port: int = 0) -> None:
        self.upstream = upstream
        self.port = port
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._accept_thread: threading.Thread | None = None

    def start(self) -> TcpProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.05)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._stopping.clear()
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            _close(sock)

    @property
    def connection_count(self) -> int:
        with self._lock:
            return len(self._sockets) // 2

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=3)
            except OSError:
                _close(client)
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                if self._stopping.is_set():
                    _close(client)
                    _close(upstream)
                    return
                self._sockets |= {client, upstream}
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._sockets -= {source, target}
            _close(source)
            _close(target)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_at(url: str, timeout: float) -> dict:
    """The settings of a Redis at `url`, for both its users: Django's cache (a mark, a
    nonce) and the steps that talk to it directly (throttles, a key's limit and counts)."""
    options = {"socket_connect_timeout": timeout, "socket_timeout": timeout}
    cache = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}
    return {"CACHES": {"default": cache | {"OPTIONS": options}}, "REDIS_URL": url}


def unreachable_redis(timeout: float = 0.25) -> dict:
    """Settings whose Redis is a closed port: every Redis call fails (an outage)."""
    return redis_at(f"redis://127.0.0.1:{closed_port()}/0", timeout)


@contextlib.contextmanager
def hung_redis(timeout: float = 0.25):
    """Settings whose Redis accepts connections and never answers (a hung server): every
    Redis call waits its `timeout`. Yields (the settings, the connections it accepted):
    one connection per Redis step tried, since a timed-out connection is dropped."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    accepted: list[socket.socket] = []
    stopping = threading.Event()

    def accept() -> None:
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield redis_at(f"redis://127.0.0.1:{listener.getsockname()[1]}/0", timeout), accepted
    finally:
        stopping.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    started_at: float = 0.0
    cookies: dict[str, str] = field(default_factory=dict)

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def code(self) -> str | None:
        try:
            return self.json["error"]["code"]
        except (ValueError, KeyError, TypeError):
            return None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def call(
    base_url: str,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: Any = None,
    timeout: float = 15,
) -> Reply:
    """One HTTP request on a fresh connection (so each one may land on any worker). A body
    given as an iterator of bytes is sent chunked (`Transfer-Encoding: chunked`, no length)."""
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    payload = None
    headers = dict(headers or {})
    if body is not None:
        payload = body if isinstance(body, bytes | Iterator) else json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    started_at = time.monotonic()
    try:
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        data = response.read()
        raw_headers = response.getheaders()
    finally:
        conn.close()
    cookies = {}
    for name, value in raw_headers:
        if name.lower() == "set-cookie":
            cookie_name, _, rest = value.partition("=")
            cookies[cookie_name.strip()] = rest.split(";", 1)[0]
    return Reply(
        status=response.status,
        headers={name.lower(): value for name, value in raw_headers},
        body=data,
        started_at=started_at,
        cookies=cookies,
    )


def until_ready(base_url: str, path: str = "/readyz", within: float = 10) -> Reply:
    """`path` asked again until it answers 200 or `within` seconds pass; the last reply.
    Readiness's database check has a 1 s deadline of its own, which a server that is fine
    can pass on CI's loaded host (10-17 on 2 cores, the first check behind PgBouncer, or the
    first after PostgreSQL came back): a 503 then, and a test that asked once failed."""
    deadline = time.monotonic() + within
    while (reply := call(base_url, "GET", path)).status != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    return reply


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


#: Every key `recording_key_function` was given, in order (see CACHES' KEY_FUNCTION).
RECORDED_CACHE_KEYS: list[str] = []


def recording_key_function(key: str, key_prefix: str, version: int) -> str:
    """Django's default cache KEY_FUNCTION, remembering the keys callers use."""
    RECORDED_CACHE_KEYS.append(key)
    return f"{key_prefix}:{version}:{key}"
