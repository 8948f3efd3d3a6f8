"""`refresh_github_keys` against a local HTTP server standing in for GitHub's API."""

from __future__ import annotations

import gc
import json
import os
import socket
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
from django.core.management import CommandError, call_command

from apps.secretscanning import github, keysource
from tests.secretscanning.keys import SigningKey, keys_document, serving


@pytest.fixture
def github_api():
    state = {"body": b"", "status": 200, "paths": [], "authorization": [], "location": None}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            state["paths"].append(self.path)
            state["authorization"].append(self.headers.get("Authorization"))
            self.send_response(state["status"])
            self.send_header("Content-Type", "application/json")
            if state["location"]:
                self.send_header("Location", state["location"])
            self.end_headers()
            self.wfile.write(state["body"])

        def log_message(self, *args):
            pass

    with serving(Handler) as state["url"]:
        yield state


def test_the_keys_are_fetched_checked_and_written(github_api, tmp_path, settings):
    key = SigningKey.new("abc123")
    github_api["body"] = keys_document(key, SigningKey.new("def456")).encode()
    target = tmp_path / "github-keys.json"
    settings.GITHUB_SECRET_SCANNING_KEYS = str(target)

    call_command("refresh_github_keys", "--url", github_api["url"])

    assert github_api["paths"] == ["/meta/public_keys/secret_scanning"]
    assert set(json.loads(target.read_text())["public_keys"][0]) == {
        "key_identifier",
        "key",
        "is_current",
    }
    body = b'[{"token":"x","type":"t","url":"u","source":"s"}]'
    claim = github.claim_of("abc123", key.sign(body))
    assert claim is not None and claim.signed(body)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"not json", 200),
        (b'{"public_keys": []}', 200),
        (b'{"public_keys": [{"key_identifier": "a", "key": "not a pem"}]}', 200),
        (b'{"message": "API rate limit exceeded"}', 403),
    ],
    ids=["not-json", "empty", "bad-pem", "http-403"],
)
def test_a_bad_answer_keeps_the_old_file(github_api, tmp_path, body, status):
    target = tmp_path / "github-keys.json"
    target.write_text("previous")
    github_api["body"], github_api["status"] = body, status

    with pytest.raises(CommandError):
        call_command("refresh_github_keys", "--url", github_api["url"], "--output", str(target))

    assert target.read_text() == "previous"


@pytest.mark.parametrize("status", [403, 500, 302])
def test_an_answer_but_200_leaves_no_connection_open(github_api, tmp_path, status):
    """urllib hands the answer to the exception it raises, which held the connection until
    collected: a socket left open, one ResourceWarning per refused fetch."""
    github_api["body"], github_api["status"] = b"{}", status

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with pytest.raises(keysource.KeySourceError, match=f"HTTP Error {status}"):
            keysource.refresh(github_api["url"], tmp_path / "keys.json", 5)
        gc.collect()

    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []


def test_a_p384_key_is_refused(github_api, tmp_path):
    from cryptography.hazmat.primitives.asymmetric import ec

    github_api["body"] = keys_document(SigningKey.new("p384", ec.SECP384R1())).encode()

    with pytest.raises(CommandError, match="P-256"):
        call_command(
            "refresh_github_keys", "--url", github_api["url"], "--output", str(tmp_path / "k")
        )


@pytest.mark.parametrize(
    "url",
    ["http://192.0.2.10/meta/public_keys/secret_scanning", "ftp://127.0.0.1/keys", "https:///x"],
)
def test_the_keys_come_over_https_only(url, tmp_path):
    with pytest.raises(CommandError, match="https"):
        call_command("refresh_github_keys", "--url", url, "--output", str(tmp_path / "k"))
    assert not (tmp_path / "k").exists()


def test_a_redirect_is_not_followed_and_the_token_not_sent_on(github_api, tmp_path, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_token_for_github_only")
    elsewhere = github_api["url"].replace("/meta/", "/elsewhere/")
    github_api["status"], github_api["location"] = 302, elsewhere
    target = tmp_path / "k"

    with pytest.raises(CommandError, match="Could not fetch"):
        call_command("refresh_github_keys", "--url", github_api["url"], "--output", str(target))

    assert github_api["paths"] == ["/meta/public_keys/secret_scanning"]  # not followed
    assert github_api["authorization"] == [None]  # a mirror, not GitHub's API
    assert not target.exists()


@pytest.mark.parametrize(
    ("url", "sent"),
    [
        ("https://api.github.com/meta/public_keys/secret_scanning", True),
        ("https://API.GitHub.com./meta/public_keys/secret_scanning", False),
        ("https://keys-mirror.example.com/meta/public_keys/secret_scanning", False),
        ("https://api.github.com.evil.example/meta/public_keys/secret_scanning", False),
        ("http://127.0.0.1:8080/meta/public_keys/secret_scanning", False),
    ],
)
def test_the_token_goes_to_githubs_api_only(url, sent, monkeypatch):
    """Found by the SSRF audit: any https host, and a plain-http mirror on this machine,
    got `GITHUB_TOKEN`."""
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_token_for_github_only")

    request = keysource._request(url, urlsplit(url))

    expected = "Bearer ghp_token_for_github_only" if sent else None
    assert request.get_header("Authorization") == expected


def test_a_mirror_gets_no_token(github_api, tmp_path, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_token_for_github_only")
    github_api["body"] = keys_document(SigningKey.new("abc123")).encode()

    call_command("refresh_github_keys", "--url", github_api["url"], "--output", str(tmp_path / "k"))

    assert github_api["authorization"] == [None]


def test_a_plain_http_mirror_is_fetched_directly_never_through_a_proxy(
    github_api, tmp_path, monkeypatch
):
    """An HTTP proxy in the environment would read a plain request, the token with it."""
    proxy = {"requests": []}

    class Proxy(BaseHTTPRequestHandler):
        def do_GET(self):
            proxy["requests"].append((self.path, self.headers.get("Authorization")))
            self.send_response(502)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.setenv("GITHUB_TOKEN", "ghp_token_for_github_only")
        github_api["body"] = keys_document(SigningKey.new("abc123")).encode()
        target = tmp_path / "keys.json"

        call_command("refresh_github_keys", "--url", github_api["url"], "--output", str(target))
    finally:
        server.shutdown()
        server.server_close()

    assert proxy["requests"] == []
    assert github_api["authorization"] == [None]
    assert target.exists()


#: What a command given `--timeout 1` takes at most below: the deadline and what a loaded
#: host adds around it (CI's SQLite suite beside its PostgreSQL steps once took 2.4 s, past
#: a bound of 2), well short of what the faults take where only each read is bounded (12 s,
#: 30 s); they took 6 s and 5 s, too near a bound that leaves a loaded host room.
ENDED_WITHIN = 8


@pytest.fixture
def dripping_server():
    """Sends `at_once`, then `dripped` a byte every 0.3 s, then `rest`: a socket timeout
    of 1 s never fires, only a deadline for the whole fetch does."""
    stop = threading.Event()
    state: dict = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.wfile.write(state["at_once"])
            for byte in state["dripped"]:
                if stop.wait(0.3):
                    return
                self.wfile.write(bytes([byte]))
            self.wfile.write(state["rest"])

        def log_message(self, *args):
            pass

    with serving(Handler) as state["url"]:
        yield state
        stop.set()  # the dripping handler's thread ends before the server stops


@pytest.mark.parametrize("where", ["body", "headers"])
def test_timeout_bounds_the_whole_fetch_not_each_read(dripping_server, tmp_path, where):
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    if where == "body":
        dripping_server["at_once"], dripping_server["rest"] = head + b"\r\n", b""
        dripping_server["dripped"] = b" " * 40  # JSON whitespace, never a whole document
    else:
        dripping_server["at_once"], dripping_server["rest"] = head, b"\r\n{}"
        dripping_server["dripped"] = b"X-Drip: " + b"1" * 30 + b"\r\n"
    target = tmp_path / "keys.json"
    target.write_text("previous")

    started = time.monotonic()
    with pytest.raises(CommandError) as refused:
        call_command(
            "refresh_github_keys",
            "--url",
            dripping_server["url"],
            "--output",
            str(target),
            "--timeout",
            "1",
        )

    # A per-read timeout would let the drip run its whole 12 s; the 1 s deadline ends it.
    assert time.monotonic() - started < ENDED_WITHIN
    assert "within 1 s" in str(refused.value)
    assert target.read_text() == "previous"


def test_timeout_bounds_the_name_lookup(tmp_path, monkeypatch):
    """getaddrinfo takes no timeout: a silent resolver could hold the job too."""
    released = threading.Event()

    def silent_resolver(*args, **kwargs):
        released.wait(30)
        raise socket.gaierror("no answer")

    monkeypatch.setattr(socket, "getaddrinfo", silent_resolver)
    started = time.monotonic()
    try:
        with pytest.raises(CommandError) as refused:
            call_command("refresh_github_keys", "--output", str(tmp_path / "k"), "--timeout", "1")
    finally:
        released.set()
    # Waiting for the resolver would take its whole 30 s; the 1 s deadline ends it.
    assert time.monotonic() - started < ENDED_WITHIN
    assert "within 1 s" in str(refused.value)


@pytest.fixture
def connections(monkeypatch):
    """Every connection attempted (none is made: no test reaches the network)."""
    attempts = []

    def create_connection(address, *args, **kwargs):
        attempts.append(address)
        raise ConnectionRefusedError("no network in tests")

    monkeypatch.setattr(socket, "create_connection", create_connection)
    return attempts


def resolving_to(monkeypatch, *addresses):
    def getaddrinfo(host, port, *args, **kwargs):
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize(
    "url",
    [
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.1/meta/public_keys/secret_scanning",
        "https://[::1]/meta/public_keys/secret_scanning",
        "https://127.0.0.1:8443/meta/public_keys/secret_scanning",
        "https://[::ffff:192.168.1.1]/keys",
    ],
)
def test_an_https_url_to_a_non_public_address_is_refused_before_connecting(
    url, tmp_path, monkeypatch, connections
):
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_token_for_github_only")
    with pytest.raises(CommandError) as refused:
        call_command("refresh_github_keys", "--url", url, "--output", str(tmp_path / "k"))
    assert connections == []
    assert "non-public" in str(refused.value)


@pytest.mark.parametrize(
    "addresses", [("10.1.2.3",), ("140.82.112.6", "192.168.0.7"), ("fd00::1",)]
)
def test_a_host_name_resolving_inside_is_refused_before_connecting(
    addresses, tmp_path, monkeypatch, connections
):
    resolving_to(monkeypatch, *addresses)
    with pytest.raises(CommandError) as refused:
        call_command(
            "refresh_github_keys",
            "--url",
            "https://keys.example.com/meta/public_keys/secret_scanning",
            "--output",
            str(tmp_path / "k"),
        )
    assert connections == []
    assert "non-public" in str(refused.value)


def test_a_host_name_resolving_to_public_addresses_is_fetched(tmp_path, monkeypatch, connections):
    resolving_to(monkeypatch, "140.82.112.6")
    with pytest.raises(CommandError, match="Could not fetch"):  # `connections` refuses it
        call_command("refresh_github_keys", "--output", str(tmp_path / "k"))
    assert connections == [("api.github.com", 443)]


@pytest.mark.parametrize("failing", ["replace", "chmod", "fsync"])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(
    github_api, tmp_path, monkeypatch, failing
):
    """Tests run as root, which writes into a read-only directory: the failure is made up."""
    github_api["body"] = keys_document(SigningKey.new("abc123")).encode()
    target = tmp_path / "github-keys.json"
    target.write_text("previous")

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, fail)
    with pytest.raises(CommandError, match=r"Could not write .*No space left"):
        call_command("refresh_github_keys", "--url", github_api["url"], "--output", str(target))

    assert sorted(p.name for p in tmp_path.iterdir()) == ["github-keys.json"]
    assert target.read_text() == "previous"


def _no_key_current(document: str) -> str:
    parsed = json.loads(document)
    for entry in parsed["public_keys"]:
        entry["is_current"] = False
    return json.dumps(parsed)


def _is_current_left_out(document: str) -> str:
    parsed = json.loads(document)
    for entry in parsed["public_keys"]:
        del entry["is_current"]
    return json.dumps(parsed)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (lambda: keys_document(SigningKey.new("abc"), SigningKey.new("abc")), "abc appears"),
        (
            lambda: keys_document(SigningKey.new("a"), SigningKey.new("b"), SigningKey.new("a")),
            "a appears",
        ),
        (lambda: _no_key_current(keys_document(SigningKey.new("a"))), "is_current"),
        (lambda: _is_current_left_out(keys_document(SigningKey.new("a"))), "is_current"),
    ],
    ids=["duplicate", "duplicate-not-adjacent", "none-current", "is-current-missing"],
)
def test_duplicate_identifiers_or_no_current_key_keep_the_old_file(
    github_api, tmp_path, document, message
):
    target = tmp_path / "github-keys.json"
    target.write_text("previous")
    github_api["body"] = document().encode()

    with pytest.raises(CommandError, match=message):
        call_command("refresh_github_keys", "--url", github_api["url"], "--output", str(target))

    assert target.read_text() == "previous"


@pytest.mark.parametrize("value", ["nan", "-1", "0", "inf", "301", "soon"])
def test_a_timeout_that_is_not_a_sensible_number_of_seconds_is_refused(tmp_path, value):
    """Found by a commands audit: `--timeout nan` reached the HTTP client (a 31-line
    traceback), `--timeout -1` an odd "could not fetch within -1 s"."""
    with pytest.raises(CommandError, match="seconds"):
        call_command("refresh_github_keys", "--output", str(tmp_path / "k"), "--timeout", value)
