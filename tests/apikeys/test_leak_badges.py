"""What a leak report did, on the key's row and page: an SDK key flagged (it keeps working,
SDK keys are public by design) and a secret key revoked say so, not only the audit log."""

from __future__ import annotations

import re

import pytest

from apps.apikeys.keyformat import KeyKind
from apps.apikeys.leaks import LeakCandidate, handle_leak_reports
from apps.apikeys.models import ApiKey
from apps.apikeys.services import revoke_key
from tests.apikeys.test_views import api_url, sdk_url
from tests.factories import make_key
from tests.pages import html, logged_in

pytestmark = pytest.mark.django_db

FOUND_AT = "https://github.com/example/site/blob/main/index.html"


def report(*plaintexts: str) -> None:
    handle_leak_reports(
        reports=[LeakCandidate(candidate=p, url=FOUND_AT) for p in plaintexts],
        reporter="GitHub secret scanning",
    )


def row_of(page: str, key: ApiKey) -> str:
    return re.search(rf'<tr[^>]*data-key-id="{key.id}".*?</tr>', page, re.S).group(0)


def test_a_flagged_sdk_key_says_so_on_its_row_and_page(owner, project):
    flagged, plaintext = make_key(KeyKind.PUBLIC, project=project, name="Storefront")
    quiet, _ = make_key(KeyKind.PUBLIC, project=project, name="Checkout")

    report(plaintext)

    flagged.refresh_from_db()
    assert flagged.revoked_at is None and flagged.leak_reported_at is not None
    client = logged_in(owner)
    page = html(client.get(sdk_url(project)))
    assert "Leak reported" in row_of(page, flagged)
    assert "Reported as leaked" in row_of(page, flagged)
    assert "Leak reported" not in row_of(page, quiet)
    assert "Leak reported" in html(client.get(f"{sdk_url(project)}{flagged.id}/"))


def test_a_secret_key_revoked_by_a_leak_report_says_why(owner, project):
    leaked, plaintext = make_key(KeyKind.SECRET, project=project, name="CI")
    by_hand, _ = make_key(KeyKind.SECRET, project=project, name="Old")
    revoke_key(actor=owner, api_key=by_hand)

    report(plaintext)

    page = html(logged_in(owner).get(api_url(project)))
    assert "Revoked</span>" in row_of(page, leaked)
    assert "Leak report</span>" in row_of(page, leaked)
    assert "Revoked</span>" in row_of(page, by_hand)
    assert "leak report" not in row_of(page, by_hand)
    assert "Leak reported" not in row_of(page, leaked)  # the flag is an SDK key's
