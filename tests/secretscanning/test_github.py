"""GitHub secret scanning (SPEC §4.12): signature first, then the report acts as a leak report."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings as django_settings
from django.db import connection
from django.http import HttpRequest
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from apps.apikeys import keyformat
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from apps.audit.models import AuditEvent
from apps.secretscanning import github
from apps.secretscanning.api import FIELD_LIMITS, MAX_REPORT_BYTES, MAX_TOKENS
from apps.webhooks.models import Event
from tests.conftest import access_token_for
from tests.factories import make_key
from tests.orgs.helpers import bearer_client, error_code, error_fields
from tests.reliability.helpers import hung_redis
from tests.secretscanning.keys import SigningKey, keys_document, serving, write_keys

pytestmark = pytest.mark.django_db

URL = "/v1/secret-scanning/github"
FOUND_AT = "https://github.com/someone/repo/blob/abc123/config.py#L4"


@pytest.fixture
def github_key(tmp_path, settings):
    key = SigningKey.new("bcb53661c06b4728e59d897fb6165d5c9cda0fd9cdf9d09ead458168deb7518c")
    rotated = SigningKey.new("90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a")
    settings.GITHUB_SECRET_SCANNING_KEYS = str(write_keys(tmp_path / "keys.json", key, rotated))
    return key


def post(body: bytes, headers: dict[str, str]):
    return APIClient().generic("POST", URL, body, content_type="application/json", **headers)


def report_body(*tokens: str) -> bytes:
    return json.dumps(
        [
            {"token": t, "type": "sigsentry_api_key", "url": FOUND_AT, "source": "content"}
            for t in tokens
        ]
    ).encode()


def nothing_changed() -> bool:
    return (
        not ApiKey.objects.filter(revoked_at__isnull=False).exists()
        and not AuditEvent.objects.filter(action__startswith="key.")
        .exclude(action="key.minted")
        .exists()
    )


def test_a_valid_report_labels_tokens_revokes_secret_keys_and_keeps_sdk_keys(github_key, project):
    secret, secret_text = make_key(KeyKind.SECRET, project=project)
    org_key, org_text = make_key(KeyKind.ORGANIZATION, organization=project.organization)
    sdk, sdk_text = make_key(KeyKind.PUBLIC, project=project)
    stranger = keyformat.generate(KeyKind.SECRET)  # well-formed, never minted
    body = report_body(secret_text, org_text, sdk_text, stranger, "not-a-key")

    response = post(body, github_key.headers(body))

    assert response.status_code == 200
    assert response.json() == [
        {"token_raw": secret_text, "token_type": "sigsentry_api_key", "label": "true_positive"},
        {"token_raw": org_text, "token_type": "sigsentry_api_key", "label": "true_positive"},
        {"token_raw": sdk_text, "token_type": "sigsentry_api_key", "label": "true_positive"},
        {"token_raw": stranger, "token_type": "sigsentry_api_key", "label": "false_positive"},
        {"token_raw": "not-a-key", "token_type": "sigsentry_api_key", "label": "false_positive"},
    ]
    for key in (secret, org_key, sdk):
        key.refresh_from_db()
    assert (secret.revoked_reason, org_key.revoked_reason) == ("leak_report", "leak_report")
    assert sdk.revoked_at is None
    sdk_works = bearer_client(sdk_text).get("/v1/me")
    assert sdk_works.status_code == 200
    revoked = AuditEvent.objects.filter(action="key.revoked_by_leak_report")
    assert {e.details["url"] for e in revoked} == {FOUND_AT}
    assert {e.actor_label for e in revoked} == {"GitHub secret scanning"}
    flagged = AuditEvent.objects.get(action="key.leak_reported")
    assert flagged.details["url"] == FOUND_AT
    assert set(Event.objects.values_list("type", flat=True)) >= {
        "key.revoked_by_leak_report",
        "key.leak_reported",
    }
    assert secret_text not in str(AuditEvent.objects.values())


def test_a_key_already_revoked_is_still_a_true_positive(github_key, project, owner):
    from apps.apikeys.services import revoke_key

    key, text = make_key(KeyKind.SECRET, project=project)
    revoke_key(actor=owner, api_key=key)
    body = report_body(text)

    assert post(body, github_key.headers(body)).json()[0]["label"] == "true_positive"


def test_a_signature_by_another_key_is_refused_and_changes_nothing(github_key, project):
    _key, text = make_key(KeyKind.SECRET, project=project)
    body = report_body(text)
    forger = SigningKey(github_key.identifier, SigningKey.new("x").private)

    response = post(body, forger.headers(body))

    assert response.status_code == 401
    assert error_code(response) == "SIGNATURE_INVALID"
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert nothing_changed()


def test_an_unknown_key_identifier_is_refused_and_logged(github_key, project, caplog):
    """A key GitHub rotated in since the last refresh: refused, and the log says what to do."""
    _key, text = make_key(KeyKind.SECRET, project=project)
    body = report_body(text)
    stranger = SigningKey.new("not-in-the-file")

    response = post(body, stranger.headers(body))

    assert (response.status_code, error_code(response)) == (401, "SIGNATURE_INVALID")
    assert nothing_changed()
    assert "unknown key identifier 'not-in-the-file'; run refresh_github_keys" in caplog.text


def test_a_credential_sent_as_the_key_identifier_is_not_logged(github_key, project, owner, caplog):
    """The refused identifier is logged, its first 80 characters: a whole key or most of a
    JWT, sent there by mistake (or by a prober), was written to the log as it came."""
    _key, text = make_key(KeyKind.SECRET, project=project)
    token = access_token_for(owner)
    for identifier in (text, token):
        stranger = SigningKey.new(identifier)
        body = report_body(text)

        response = post(body, stranger.headers(body))

        assert (response.status_code, error_code(response)) == (401, "SIGNATURE_INVALID")
    assert "unknown key identifier 'ss_secret_…'" in caplog.text
    assert "unknown key identifier 'eyJ…" in caplog.text
    assert text[len("ss_secret_") :][:8] not in caplog.text
    assert token[3:40] not in caplog.text


def test_a_tampered_body_is_refused(github_key, project):
    _key, text = make_key(KeyKind.SECRET, project=project)
    _other, other_text = make_key(KeyKind.SECRET, project=project)
    signed = report_body(other_text)
    tampered = report_body(text)

    response = post(tampered, github_key.headers(signed))

    assert (response.status_code, error_code(response)) == (401, "SIGNATURE_INVALID")
    assert nothing_changed()


KNOWN = "known-id"  # replaced by the configured key's identifier


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"HTTP_GITHUB_PUBLIC_KEY_IDENTIFIER": KNOWN},
        {"HTTP_GITHUB_PUBLIC_KEY_SIGNATURE": "MEUCIQ=="},
        {"HTTP_GITHUB_PUBLIC_KEY_IDENTIFIER": KNOWN, "HTTP_GITHUB_PUBLIC_KEY_SIGNATURE": "%%%"},
        {"HTTP_GITHUB_PUBLIC_KEY_IDENTIFIER": KNOWN, "HTTP_GITHUB_PUBLIC_KEY_SIGNATURE": "QUJD"},
    ],
    ids=["none", "no-signature", "no-identifier", "not-base64", "not-der"],
)
def test_missing_or_garbage_signature_headers_are_refused(github_key, project, headers):
    _key, text = make_key(KeyKind.SECRET, project=project)
    headers = {
        name: github_key.identifier if value == KNOWN else value for name, value in headers.items()
    }

    response = post(report_body(text), headers)

    assert (response.status_code, error_code(response)) == (401, "SIGNATURE_INVALID")
    # No bearer credential was sent: the challenge names no bearer error (SPEC §3).
    assert response["WWW-Authenticate"] == 'Bearer realm="sigsentry"'
    assert nothing_changed()


def test_without_configured_keys_every_report_is_refused(settings, github_key, project):
    _key, text = make_key(KeyKind.SECRET, project=project)
    body = report_body(text)
    settings.GITHUB_SECRET_SCANNING_KEYS = ""

    response = post(body, github_key.headers(body))

    assert response.status_code == 401
    assert nothing_changed()


def test_a_key_on_another_curve_in_the_file_is_not_trusted(tmp_path, settings, project):
    p384 = SigningKey.new("p384", ec.SECP384R1())
    settings.GITHUB_SECRET_SCANNING_KEYS = str(write_keys(tmp_path / "k.json", p384))
    _key, text = make_key(KeyKind.SECRET, project=project)
    body = report_body(text)

    assert post(body, p384.headers(body)).status_code == 401
    assert nothing_changed()


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"token": "x"}',
        b'"ss_secret_"',
        json.dumps([{"token": "x"}] * 1001).encode(),
        b"[" * 100_000,
    ],
    ids=["not-json", "object", "string", "1001", "deep"],
)
def test_a_signed_but_malformed_body_is_a_validation_error(github_key, body):
    response = post(body, github_key.headers(body))

    assert response.status_code == 400
    assert "body" in error_fields(response)


def test_odd_items_never_cost_a_real_leak_its_revocation(github_key, project):
    """GitHub answers a refusal by sending the same report again: one odd item refused with
    the whole report would leave every real key in it live for good."""
    key, text = make_key(KeyKind.SECRET, project=project)
    second, second_text = make_key(KeyKind.SECRET, project=project)
    long_path = "https://github.com/o/r/blob/main/" + "%E6%96%87" * 300  # 2,730 characters
    items = [
        {"token": text, "type": "sigsentry_api_key", "url": long_path, "source": "content"},
        {"token": "ss_secret_other", "type": None, "url": None, "source": 7},
        {"token": "x" * 600, "type": "t" * 500, "url": "u\x00v"},
        {"token": 42},
        "ss_secret_x",
        {"type": "no token"},
        # Lone surrogates (found by an audit: a 400 or a 500, every key in the report live).
        {"token": second_text, "type": "sigsentry\ud800", "url": "https://x/\udfff"},
        {"token": "ss_secret_\ud800", "type": "t"},
    ]
    body = json.dumps(items).encode()

    response = post(body, github_key.headers(body))

    assert response.status_code == 200
    assert [(i["token_raw"][:20], i["token_type"][:9], i["label"]) for i in response.json()] == [
        (text[:20], "sigsentry", "true_positive"),
        ("ss_secret_other", "", "false_positive"),
        ("x" * 20, "t" * 9, "false_positive"),
        (second_text[:20], "sigsentry", "true_positive"),
    ]
    for revoked in (key, second):
        revoked.refresh_from_db()
        assert revoked.revoked_reason == "leak_report"
    urls = {
        e.target_id: e.details["url"]
        for e in AuditEvent.objects.filter(action="key.revoked_by_leak_report")
    }
    assert urls == {str(key.id): long_path[:500], str(second.id): "https://x/"}


def test_a_key_quoted_in_the_url_is_not_stored(github_key, project):
    _key, text = make_key(KeyKind.SECRET, project=project)
    _other, other = make_key(KeyKind.ORGANIZATION, organization=project.organization)
    url = f"https://gist.github.com/someone/{text}?k={other}"
    body = json.dumps([{"token": text, "type": "t", "url": url, "source": "gist"}]).encode()

    assert post(body, github_key.headers(body)).status_code == 200

    event = AuditEvent.objects.get(action="key.revoked_by_leak_report")
    assert event.details["url"] == "https://gist.github.com/someone/ss_secret_…?k=ss_org_…"


@pytest.mark.usefixtures("throttle_clock")
def test_bad_signatures_are_throttled_per_client_and_github_is_not(github_key, project, settings):
    """GitHub's key identifiers are public: anyone can have a 4 MiB body read and verified.
    Bad signatures count as failed credentials of their client; a good one costs nothing."""
    settings.THROTTLE_RATES = settings.THROTTLE_RATES | {"failed_auth_ip": (3, 60)}
    forged = SigningKey.new(github_key.identifier)  # the real identifier, another key
    body = report_body(keyformat.generate(KeyKind.SECRET))
    github = {"REMOTE_ADDR": "192.0.2.10"}
    for _ in range(3):
        assert post(body, github_key.headers(body) | github).status_code == 200

    refused = [post(body, forged.headers(body)).status_code for _ in range(4)]

    assert refused == [401, 401, 401, 429]
    assert post(body, github_key.headers(body) | github).status_code == 200


def test_a_malformed_body_without_a_valid_signature_is_401(github_key):
    response = post(b"not json", {"HTTP_GITHUB_PUBLIC_KEY_IDENTIFIER": github_key.identifier})

    assert response.status_code == 401


def test_1000_tokens_are_looked_up_in_one_query(github_key, project):
    tokens = [keyformat.generate(KeyKind.SECRET) for _ in range(999)]
    _key, real = make_key(KeyKind.SECRET, project=project)
    body = report_body(real, *tokens)

    with CaptureQueriesContext(connection) as ctx:
        response = post(body, github_key.headers(body))

    assert response.status_code == 200
    labels = [item["label"] for item in response.json()]
    assert labels.count("true_positive") == 1 and len(labels) == 1000
    lookups = [q["sql"] for q in ctx.captured_queries if 'FROM "apikeys_apikey"' in q["sql"]]
    assert len([q for q in lookups if '"digest" IN' in q]) == 1


# Body size: the endpoint's own limit fits a full report


def largest_report(token: str) -> list[dict[str, str]]:
    """MAX_TOKENS items with every field at its limit (ASCII, as GitHub sends them); the
    first carries `token` (a real key is shorter than the field allows)."""
    widest = {name: "a" * limit for name, limit in FIELD_LIMITS.items()}
    widest["url"] = (FOUND_AT + "?" + "a" * FIELD_LIMITS["url"])[: FIELD_LIMITS["url"]]
    return [widest | {"token": token}] + [widest] * (MAX_TOKENS - 1)


def test_a_signed_report_of_1000_items_at_the_field_limits_revokes_the_key(github_key, project):
    key, text = make_key(KeyKind.SECRET, project=project)
    body = json.dumps(largest_report(text)).encode()
    assert django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE < len(body) <= MAX_REPORT_BYTES

    response = post(body, github_key.headers(body))

    assert response.status_code == 200, response.content[:300]
    labels = [item["label"] for item in response.json()]
    assert labels == ["true_positive"] + ["false_positive"] * (MAX_TOKENS - 1)
    key.refresh_from_db()
    assert key.revoked_reason == "leak_report"
    revoked = AuditEvent.objects.get(action="key.revoked_by_leak_report")
    assert revoked.details["url"].startswith(FOUND_AT)  # kept in full up to its audit limit


@pytest.fixture
def body_reads(monkeypatch):
    """Every read of a request body (the view reads it with `request.read()`)."""
    reads = []
    real = HttpRequest.read

    def read(self, *args, **kwargs):
        data = real(self, *args, **kwargs)
        reads.append(len(data))
        return data

    monkeypatch.setattr(HttpRequest, "read", read)
    return reads


def test_a_signed_report_over_the_limit_never_reaches_the_view(github_key, project, monkeypatch):
    """Refused by the size limit: the view never looks at the headers or the body (the
    middleware reads a body this little over the limit to its end and drops it)."""
    claims = []
    monkeypatch.setattr(github, "claim_of", lambda *headers: claims.append(headers))
    _key, text = make_key(KeyKind.SECRET, project=project)
    report = report_body(text)
    body = report[:-1] + b" " * (MAX_REPORT_BYTES + 1 - len(report)) + b"]"  # valid, padded
    assert len(body) == MAX_REPORT_BYTES + 1

    response = post(body, github_key.headers(body))

    assert response.status_code == 400
    assert error_fields(response) == {"body": [f"At most {MAX_REPORT_BYTES} bytes."]}
    assert claims == []
    assert nothing_changed()


@pytest.mark.parametrize(
    "headers",
    [{}, {"HTTP_GITHUB_PUBLIC_KEY_IDENTIFIER": "unknown"}, "no signature", "not base64"],
    ids=["no headers", "unknown key", "no signature", "not base64"],
)
def test_a_large_body_whose_headers_no_key_could_have_signed_is_refused_unread(
    github_key, project, body_reads, headers
):
    """Up to MAX_REPORT_BYTES may reach the view, from anyone: nothing reads it before the
    headers name a configured key and carry a signature."""
    _key, text = make_key(KeyKind.SECRET, project=project)
    body = json.dumps(largest_report(text)).encode()
    if headers == "no signature":
        headers = {"HTTP_GITHUB_PUBLIC_KEY_IDENTIFIER": github_key.identifier}
    elif headers == "not base64":
        headers = github_key.headers(body) | {"HTTP_GITHUB_PUBLIC_KEY_SIGNATURE": "%%%"}

    response = post(body, headers)

    assert (response.status_code, error_code(response)) == (401, "SIGNATURE_INVALID")
    assert body_reads == []
    assert nothing_changed()


def test_an_unsigned_report_over_one_mib_is_refused_by_its_signature(github_key, project):
    _key, text = make_key(KeyKind.SECRET, project=project)
    body = json.dumps(largest_report(text)).encode()

    response = post(body, {"HTTP_GITHUB_PUBLIC_KEY_IDENTIFIER": github_key.identifier})

    assert (response.status_code, error_code(response)) == (401, "SIGNATURE_INVALID")
    assert nothing_changed()


@pytest.mark.parametrize("path", ["/v1/leaked-keys", "/v1/auth/login", "/login/"])
def test_every_other_endpoint_keeps_the_default_limit(path):
    limit = django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    body = json.dumps({"keys": ["x" * limit]}).encode()

    response = APIClient().generic("POST", path, body, content_type="application/json")

    assert response.status_code == 400
    if path.startswith("/v1/"):
        assert error_fields(response) == {"body": [f"At most {limit} bytes."]}


# GitHub rotated its key since the last refresh: the endpoint fetches the keys itself


@pytest.fixture
def github_api(settings, github_key):
    """GitHub's keys endpoint on this machine, now listing a new key first."""
    state = {"document": b"", "status": 200, "hits": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            state["hits"] += 1
            self.send_response(state["status"])
            self.end_headers()
            self.wfile.write(state["document"])

        def log_message(self, *args):
            pass

    state["key"] = SigningKey.new("f0e1d2c3b4a59687786950000000000000112233445566778899aabbccddee")
    state["document"] = keys_document(state["key"], github_key).encode()
    with serving(Handler) as settings.GITHUB_SECRET_SCANNING_KEYS_URL:
        yield state


def test_a_report_signed_with_a_key_rotated_in_fetches_the_keys_and_acts(github_api, project):
    key, text = make_key(KeyKind.SECRET, project=project)
    body = report_body(text)

    response = post(body, github_api["key"].headers(body))

    assert response.status_code == 200
    assert response.json()[0]["label"] == "true_positive"
    key.refresh_from_db()
    assert key.revoked_reason == "leak_report"
    assert github.knows(github_api["key"].identifier)  # the file now has it
    assert github_api["hits"] == 1


def test_with_redis_hung_a_report_waits_for_it_once(github_api, project, caplog):
    """Found by an audit: the on-demand fetch's mark waited for a hung Redis after the
    failure throttle had (or before it), 0.5 s a request, and was not counted as failing
    open: a request waits for Redis at most once (core.failopen)."""
    body = report_body(keyformat.generate(KeyKind.SECRET))
    made_up = SigningKey.new("made-up")

    with hung_redis() as (redis_down, tried), override_settings(**redis_down):
        response = post(body, made_up.headers(body))
        assert len(tried) == 1

    assert (response.status_code, error_code(response)) == (401, "SIGNATURE_INVALID")
    assert github_api["hits"] == 0  # nothing bounds the fetches without the mark: none


def test_keys_are_fetched_on_demand_at_most_every_five_minutes(github_api, project, caplog):
    """Made-up identifiers cannot have GitHub's API called on every request."""
    body = report_body(keyformat.generate(KeyKind.SECRET))
    for n in range(3):
        made_up = SigningKey.new(f"made-up-{n}")
        response = post(body, made_up.headers(body) | {"REMOTE_ADDR": f"192.0.2.{n + 1}"})
        assert (response.status_code, error_code(response)) == (401, "SIGNATURE_INVALID")

    assert github_api["hits"] == 1
    assert "unknown key identifier 'made-up-2'; run refresh_github_keys" in caplog.text


@pytest.mark.parametrize("answer", [(500, b"oops"), (200, b'{"public_keys": []}')])
def test_a_failed_fetch_on_demand_keeps_the_file_and_refuses(github_api, project, answer):
    github_api["status"], github_api["document"] = answer
    path = Path(django_settings.GITHUB_SECRET_SCANNING_KEYS)
    before = path.read_text()
    _key, text = make_key(KeyKind.SECRET, project=project)
    body = report_body(text)

    response = post(body, github_api["key"].headers(body))

    assert (response.status_code, error_code(response)) == (401, "SIGNATURE_INVALID")
    assert nothing_changed()
    assert path.read_text() == before
