"""Answers are compressed for clients that accept gzip (Django's GZipMiddleware, from one
packet's length: `core.middleware.CompressionMiddleware`).

A key page of 50 keys was 690 KB of HTML (each row's 30-day chart, its dialogs), 450 KB
for a viewer, and an organization's keys page 840 KB at 1,200 projects (a large-tenant
audit): gzip makes them 35 to 70 KB. A load balancer rarely compresses (AWS's ALB does
not), so the service does. Django's middleware pads each compressed answer with random
bytes (Heal the Breach), so that the length of a page holding a secret (a new key's dialog,
a two-factor setup) does not tell an attacker who reflects text into it whether a guess
matched (BREACH).
"""

from __future__ import annotations

import gzip
import json
import urllib.request

import pytest

from apps.apikeys.keyformat import KeyKind
from core.middleware import CompressionMiddleware
from tests.conftest import bearer
from tests.factories import make_key
from tests.orgs.helpers import user_client
from tests.pages import logged_in

GZIP = {"HTTP_ACCEPT_ENCODING": "gzip, deflate, br"}


@pytest.fixture
def key_page(owner, project):
    for number in range(20):
        make_key(KeyKind.SECRET, project=project, name=f"Ingest worker {number:02}")
    return logged_in(owner), f"/projects/{project.id}/api-keys/"


@pytest.mark.django_db
def test_a_key_page_is_sent_compressed_to_a_client_that_accepts_gzip(key_page):
    client, path = key_page

    plain = client.get(path)
    packed = client.get(path, **GZIP)

    assert plain.status_code == packed.status_code == 200
    assert "Content-Encoding" not in plain
    assert packed["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in packed["Vary"]
    html = gzip.decompress(packed.content).decode()
    assert "Ingest worker 19" in html and html.rstrip().endswith("</html>")
    assert len(packed.content) * 4 < len(plain.content)


@pytest.mark.django_db
def test_the_same_answer_compressed_twice_differs_in_length(owner, project):
    """The BREACH mitigation: random padding, so the length is no oracle for a guess."""
    for number in range(10):
        make_key(KeyKind.SECRET, project=project, name=f"Batch exporter {number}")
    client = user_client(owner)

    answers = [client.get(f"/v1/projects/{project.id}/api-keys", **GZIP) for _ in range(6)]

    assert len({gzip.decompress(answer.content) for answer in answers}) == 1  # the same body
    assert len({len(answer.content) for answer in answers}) > 1


@pytest.mark.django_db
def test_a_long_api_answer_is_compressed_and_one_of_a_packet_is_not(api_client, owner, project):
    _api_key, secret = make_key(KeyKind.SECRET, project=project)
    for number in range(10):
        make_key(KeyKind.SECRET, project=project, name=f"Batch exporter {number}")
    client = user_client(owner)

    listed = client.get(f"/v1/projects/{project.id}/api-keys", **GZIP)
    me = api_client.get("/v1/me", **bearer(secret), **GZIP)

    assert listed.status_code == 200 and listed["Content-Encoding"] == "gzip"
    names = [key["name"] for key in json.loads(gzip.decompress(listed.content))["results"]]
    assert "Batch exporter 9" in names
    assert me.status_code == 200 and len(me.content) < CompressionMiddleware.MIN_BYTES
    assert "Content-Encoding" not in me and json.loads(me.content)["key"]["prefix"] in secret


@pytest.mark.slow
def test_gunicorn_sends_the_dashboard_compressed(live_url):
    request = urllib.request.Request(live_url + "/login/", headers={"Accept-Encoding": "gzip"})

    with urllib.request.urlopen(request, timeout=10) as answer:
        body = answer.read()
        encoding = answer.headers["Content-Encoding"]

    assert encoding == "gzip"
    assert b"<form" in gzip.decompress(body)
