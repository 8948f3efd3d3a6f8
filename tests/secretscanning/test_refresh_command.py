"""`refresh_github_keys` against a local HTTP server standing in for GitHub's API."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.management import CommandError, call_command

from apps.secretscanning import github
from tests.secretscanning.keys import SigningKey, keys_document


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

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}/meta/public_keys/secret_scanning"
    yield state
    server.shutdown()
    server.server_close()


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
    assert github_api["authorization"] == ["Bearer ghp_token_for_github_only"]
    assert not target.exists()


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
    assert github_api["authorization"] == ["Bearer ghp_token_for_github_only"]
    assert target.exists()
