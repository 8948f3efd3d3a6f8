"""Real receivers for outbound traffic, all on 127.0.0.1: an HTTP endpoint, an SMTP
server (aiosmtpd) and the `run_worker` process.

Tests never send anything to another address: SSRF refusals are tested by
validation of literal addresses, which needs no traffic.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.servers import ROOT, database_environment, free_port


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An HTTP endpoint answering `status` with `headers` (after `delay` seconds) and recording
    every POST."""

    status: int = 200
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)  # e.g. a redirect's Location
    requests: list[Received] = field(default_factory=list)
    in_flight: int = 0  # requests read but not yet answered
    #: Serve HTTPS with this (certificate, key) PEM pair, e.g. `self_signed_certificate`'s.
    tls: tuple[Path, Path] | None = None

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver.in_flight += 1
                if receiver.delay:
                    time.sleep(receiver.delay)
                receiver.requests.append(Received(self.path, dict(self.headers.items()), body))
                receiver.in_flight -= 1
                self.send_response(receiver.status)
                for name, value in receiver.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_GET = do_POST

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}/hooks/sigsentry"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.requests)


def self_signed_certificate(directory: Path, name: str = "localhost") -> tuple[Path, Path]:
    """A certificate for `name` that no trust store holds, and its key (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "certificate.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class _SmtpHandler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        refusal = self.sink.refusing.get(address)
        if refusal:
            return refusal  # e.g. "550 5.1.1 No such user" (for good) or "450 ..." (for now)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.sink.messages.append(message)
        return "250 Message accepted"


class SmtpSink:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        #: address -> the reply the server gives it at RCPT instead of accepting it
        self.refusing: dict[str, str] = {}
        self.port = free_port()
        self.controller = Controller(_SmtpHandler(self), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def settings(self) -> dict:
        return {
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": self.port,
            "EMAIL_USE_TLS": False,
            "EMAIL_HOST_USER": "",
            "EMAIL_HOST_PASSWORD": "",
        }

    def stop(self) -> None:
        self.controller.stop()

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address in str(m["To"])]

    def wait_for(self, predicate, timeout: float = 30.0) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [m for m in self.messages if predicate(m)]
            if found:
                return found
            time.sleep(0.1)
        return []


def text_of(message: EmailMessage) -> tuple[str, str]:
    """(plain text, HTML) parts of a message."""
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    return (plain.get_content() if plain else "", html.get_content() if html else "")


def _readme_verify():
    """The README's verification example, run as written: a receiver copies it."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```python\n(import hashlib, hmac, time\n.*?)```", readme, re.S)
    assert block is not None, "README: the webhook verification example is gone"
    namespace: dict = {}
    exec(block.group(1), namespace)  # our own README
    return namespace["verify"]


verify_signature = _readme_verify()


class WorkerProcess:
    """`python manage.py run_worker` on the test database (as the servers reach it), with fast
    schedules."""

    def __init__(self, env: dict[str, str] | None = None, *args: str) -> None:
        self.log_path = ROOT / "test-artifacts" / f"worker-{free_port()}.log"
        inherited = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
        self.env = {
            **inherited,
            "DJANGO_SETTINGS_MODULE": "sigsentry.test_settings",
            # Through the session's PgBouncer too when TEST_SERVERS_VIA_PGBOUNCER is on.
            **database_environment(),
            "DEBUG": "false",
            "WEBHOOKS_ALLOW_PRIVATE": "true",
            "SITE_URL": "https://sigsentry.test",
            **(env or {}),
        }
        self.args = args or ("--poll-interval", "0.2", "--urgent-every", "1")
        self.process: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        Path(self.log_path).parent.mkdir(exist_ok=True)
        # The child has its own descriptor of the log; this process's is closed.
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "run_worker", *self.args],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def wait_started(self, timeout: float = 60.0) -> WorkerProcess:
        """Return once this process has logged its "started" line: from then on it runs
        (SPEC §4.11's promises hold "while the worker runs", not while Python and Django
        load, which takes seconds on a loaded host). Its own line: the log file is appended
        to, and a free port (its name) may have served an earlier worker."""
        assert self.process is not None
        line = re.compile(rf"worker \S+-{self.process.pid}-\S+ started")
        deadline = time.monotonic() + timeout
        while not line.search(self.log()):
            assert self.process.poll() is None, f"the worker exited: {self.log()[-2000:]}"
            assert time.monotonic() < deadline, f"no start in {timeout} s: {self.log()[-2000:]}"
            time.sleep(0.05)
        return self

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait: the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def hung_smtp(settings, timeout: float = 0.5):
    """`settings` sending mail to a server that accepts connections and never answers (a
    hung server): every send waits `timeout`. Yields the connections it accepted."""
    silent = socket.create_server(("127.0.0.1", 0))
    connections: list = []
    threading.Thread(
        target=lambda: [connections.append(silent.accept()) for _ in range(5)], daemon=True
    ).start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = silent.getsockname()
    settings.EMAIL_TIMEOUT = timeout
    try:
        yield connections
    finally:
        silent.close()
