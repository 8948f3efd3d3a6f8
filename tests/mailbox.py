"""A real SMTP server for tests (aiosmtpd), and what it received.

Tests that send mail point Django (or a gunicorn server, through EMAIL_URL)
at it, then read the messages and follow the links in them as a person would.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage

from aiosmtpd.controller import Controller

from tests.servers import free_port

LINK = re.compile(r"https?://[^\s\"'<>]+")


@dataclass(frozen=True)
class Mail:
    to: tuple[str, ...]
    message: EmailMessage
    #: The message as the server received it (after DATA's dot-unstuffing), line breaks
    #: included: what a test of lines, encodings and headers reads.
    raw: bytes = b""

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def sender(self) -> str:
        return str(self.message["From"])

    def part(self, content_type: str) -> str:
        part = self.message.get_body(preferencelist=(content_type.split("/")[1],))
        assert part is not None and part.get_content_type() == content_type, content_type
        return part.get_content()

    @property
    def text(self) -> str:
        return self.part("text/plain")

    @property
    def html(self) -> str:
        return self.part("text/html")

    def link(self, path_prefix: str) -> str:
        """The one link of the plain-text part whose path starts with `path_prefix`."""
        links = {url for url in LINK.findall(self.text) if path_prefix in url}
        assert len(links) == 1, (path_prefix, links)
        return links.pop()


class _Handler:
    def __init__(self, box: SmtpMailbox) -> None:
        self.box = box

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.box.lock:
            self.box.held += self.box.holding
        while self.box.holding:  # a server that hangs mid-conversation; others still served
            await asyncio.sleep(0.02)
        refusal = self.box.refused_recipients.get(address)
        if refusal:
            return refusal  # e.g. "550 5.1.1 No such user" (for good) or "450 ..." (for now)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.box.lock:
            if self.box.refusing:
                self.box.refusing -= 1
                return "451 4.3.0 Try again later"  # a transient failure: the sender retries
        if self.box.delay:
            time.sleep(self.box.delay)  # a slow mail server: the SMTP conversation waits
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.box.lock:
            self.box.received.append(
                Mail(
                    to=tuple(envelope.rcpt_tos),
                    message=message,
                    raw=envelope.original_content or envelope.content,
                )
            )
        return "250 Message accepted for delivery"


class SmtpMailbox:
    """An SMTP server on 127.0.0.1 that keeps every message it accepts."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[Mail] = []
        self.lock = threading.Lock()
        #: Seconds the server waits before accepting a message (a slow server).
        self.delay = 0.0
        #: How many of the next messages it refuses with a temporary error (451).
        self.refusing = 0
        #: address -> the reply the server gives it at RCPT instead of accepting it
        self.refused_recipients: dict[str, str] = {}
        #: While true, the server answers no recipient (a hung server, before the message);
        #: `held` counts the conversations it stopped so.
        self.holding = False
        self.held = 0
        self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        """As EMAIL_URL (django-environ's email URL)."""
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> SmtpMailbox:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def clear(self) -> None:
        with self.lock:
            self.received.clear()
        self.delay = 0.0
        self.refusing = 0
        self.refused_recipients = {}
        self.holding = False
        self.held = 0

    def messages(self, to: str | None = None) -> list[Mail]:
        with self.lock:
            return [m for m in self.received if to is None or to in m.to]

    def wait_for(self, to: str, *, count: int = 1, timeout: float = 10.0) -> list[Mail]:
        """The messages to `to` once `count` have arrived (servers send after they answer)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.messages(to)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{count} message(s) to {to} did not arrive; got {self.messages()}")
