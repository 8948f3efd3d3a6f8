"""A key row's failed action (Edit limits, Roll, Replace, Origins) is shown on the key's
row of the list its form was on: the same page and filter, or the page that now holds the
key, or at worst a message on the page; never a page without the key and without a word."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.apikeys import keyformat
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from apps.apikeys.services import revoke_key
from tests import factories
from tests.apikeys.test_views import api_url, make_legacy_key, minted_key_of, nonce_of, sdk_url
from tests.factories import make_key
from tests.pages import assert_no_inline_code, html, key_page_url, logged_in

pytestmark = pytest.mark.django_db

BAD_IPS = "203.0.113.0/24\n10.0.0.300"
IP_ERROR = "Not a CIDR or IP address: 10.0.0.300"
GRACE_ERROR = "Choose when the old key stops working."
HIDDEN = re.compile(r'<input type="hidden" name="(page|unused)" value="([^"]*)">')


def row_of(page: str, api_key) -> str | None:
    match = re.search(rf'<tr[^>]*data-key-id="{api_key.id}".*?</tr>', page, re.S)
    return match.group(0) if match else None


def form_of(row: str, action: str) -> str:
    return re.search(rf'<form[^>]*action="[^"]*/{action}/".*?</form>', row, re.S).group(0)


def list_fields(form: str) -> dict[str, str]:
    """The list's state a row form carries (hidden `page`, `unused`)."""
    return dict(HIDDEN.findall(form))


def limits_dialog_is_open(row: str, api_key) -> bool:
    return bool(re.search(rf'<dialog[^>]*id="limits-{api_key.id}"[^>]*data-dialog-autoopen', row))


def flashes(page: str) -> list[str]:
    return re.findall(r'<p class="flash flash-error">([^<]*)</p>', page)


@pytest.fixture
def client(owner):
    return logged_in(owner)


@pytest.fixture
def payments(project, owner):
    """ "Payments CI", a secret key on page 2 of Project → API Keys: 50 newer keys above it."""
    old, _ = make_key(KeyKind.SECRET, project=project, name="Payments CI")
    ApiKey.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=1))
    factories.bulk_secret_keys(project, 50, created_by=owner)
    old.refresh_from_db()
    return old


@pytest.fixture
def dormant(project, owner):
    """ "Dormant CI", unused for 40 days: page 2 under "Unused for 30 days" (50 unused keys
    above it), page 3 of every key (50 recent keys above those)."""
    now = timezone.now()
    old, _ = make_key(KeyKind.SECRET, project=project, name="Dormant CI")
    ApiKey.objects.filter(pk=old.pk).update(created_at=now - timedelta(days=40))
    factories.bulk_secret_keys(
        project, 50, created_by=owner, each=lambda i: {"created_at": now - timedelta(days=35)}
    )
    factories.bulk_secret_keys(
        project,
        50,
        created_by=owner,
        each=lambda i: {"prefix": f"ss_secret_r{i:07d}", "digest": keyformat.digest(f"r{i}")},
    )
    old.refresh_from_db()
    return old


# The list's state, carried by the row forms ---------------------------------------


def test_a_bad_ip_allowlist_on_a_page_two_key_shows_the_error_in_its_reopened_dialog(
    client, project, payments
):
    url = api_url(project)
    row = row_of(html(client.get(f"{url}?page=2")), payments)
    state = list_fields(form_of(row, "limits"))
    assert state == {"page": "2"}

    response = client.post(f"{url}{payments.id}/limits/", {"allowed_ips": BAD_IPS} | state)

    assert response.status_code == 200
    page = html(response)
    row = row_of(page, payments)
    assert row is not None, "the key's row must be drawn"
    assert IP_ERROR in row
    assert limits_dialog_is_open(row, payments)
    assert "Page 2 of 2" in page
    assert list_fields(form_of(row, "limits")) == {"page": "2"}
    assert_no_inline_code(page)
    payments.refresh_from_db()
    assert payments.allowed_ips == []
    # The list's own address, for the page's relative links and a reload.
    assert f'data-list-url="{url}?page=2"' in page

    # Fixed and sent again: saved, and back to the list as before.
    fixed = client.post(f"{url}{payments.id}/limits/", {"allowed_ips": "203.0.113.0/24"} | state)
    assert fixed.status_code == 302 and fixed["Location"] == url
    payments.refresh_from_db()
    assert payments.allowed_ips == ["203.0.113.0/24"]


def test_a_bad_ip_allowlist_under_the_unused_filter_shows_the_error_on_that_list(
    client, project, dormant
):
    url = api_url(project)
    row = row_of(html(client.get(f"{url}?unused=30&page=2")), dormant)
    state = list_fields(form_of(row, "limits"))
    assert state == {"page": "2", "unused": "30"}

    response = client.post(f"{url}{dormant.id}/limits/", {"allowed_ips": BAD_IPS} | state)

    assert response.status_code == 200
    page = html(response)
    row = row_of(page, dormant)
    assert row is not None
    assert IP_ERROR in row
    assert limits_dialog_is_open(row, dormant)
    assert "Page 2 of 2" in page
    assert re.search(r'aria-current="page">Unused for 30 days<', page)
    assert list_fields(form_of(row, "roll")) == {"page": "2", "unused": "30"}
    assert f'data-list-url="{url}?unused=30&amp;page=2"' in page


def test_a_bad_roll_grace_on_a_page_two_key_is_shown_on_its_row(client, project, payments):
    url = api_url(project)
    listed = html(client.get(f"{url}?page=2"))
    state = list_fields(form_of(row_of(listed, payments), "roll"))
    nonce = re.search(r'name="nonce" value="([^"]+)"', listed).group(1)

    response = client.post(
        f"{url}{payments.id}/roll/", {"grace_seconds": "12345", "nonce": nonce} | state
    )

    assert response.status_code == 200
    row = row_of(html(response), payments)
    assert row is not None
    assert GRACE_ERROR in row
    assert not ApiKey.objects.filter(replaces=payments).exists()

    # Rolled as before: the new key shown once, on the first page, where it is listed.
    nonce = re.search(r'name="nonce" value="([^"]+)"', html(response)).group(1)
    rolled = client.post(
        f"{url}{payments.id}/roll/", {"grace_seconds": "3600", "nonce": nonce} | state
    )
    minted_key_of(rolled)
    assert row_of(html(rolled), ApiKey.objects.get(replaces=payments)) is not None
    assert "data-list-url" not in html(rolled)


def test_a_bad_origin_on_a_page_two_sdk_key_is_shown_on_its_row(client, project, owner):
    public, _ = make_key(KeyKind.PUBLIC, project=project, name="Storefront")
    ApiKey.objects.filter(pk=public.pk).update(created_at=timezone.now() - timedelta(days=1))
    factories.bulk_secret_keys(
        project, 50, created_by=owner, type="public", permissions=["analysis:read"]
    )
    url = sdk_url(project)

    response = client.post(f"{url}{public.id}/origins/", {"allowed_origins": "ftp://x", "page": 2})

    row = row_of(html(response), public)
    assert row is not None
    assert "Not an origin of the form" in row


@pytest.mark.parametrize(
    "state",
    [
        {"page": "abc", "unused": "7"},
        {"page": "-1", "unused": "30'><script>alert(1)</script>"},
        {"page": "99999999999999999999", "unused": ""},
        {"page": "2.5", "unused": ["30", "90"]},
        {"page": "", "unused": "0x1e"},
        {},
    ],
)
def test_garbage_list_state_falls_back_and_still_shows_the_row(client, project, payments, state):
    url = api_url(project)

    response = client.post(f"{url}{payments.id}/limits/", {"allowed_ips": BAD_IPS} | state)

    assert response.status_code == 200
    page = html(response)
    assert "<script>alert" not in page
    row = row_of(page, payments)
    assert row is not None, "the page holding the key is drawn"
    assert IP_ERROR in row
    assert limits_dialog_is_open(row, payments)
    assert list_fields(form_of(row, "limits")) == {"page": "2"}


# The key is no longer where its form was ---------------------------------------------


def test_a_key_pushed_to_the_next_page_meanwhile_is_shown_on_that_page(client, project, owner):
    key, _ = make_key(KeyKind.SECRET, project=project, name="Payments CI")
    url = api_url(project)
    state = list_fields(form_of(row_of(html(client.get(url)), key), "limits"))
    assert state == {"page": "1"}
    factories.bulk_secret_keys(
        project, 50, created_by=owner, each=lambda i: {"created_at": timezone.now()}
    )

    response = client.post(f"{url}{key.id}/limits/", {"allowed_ips": BAD_IPS} | state)

    page = html(response)
    row = row_of(page, key)
    assert row is not None
    assert IP_ERROR in row
    assert "Page 2 of 2" in page


def test_a_key_revoked_meanwhile_leaves_the_filter_and_is_shown_among_all_keys(
    client, project, owner, dormant
):
    url = api_url(project)
    state = list_fields(
        form_of(row_of(html(client.get(f"{url}?unused=30&page=2")), dormant), "limits")
    )
    revoke_key(actor=owner, api_key=dormant)

    response = client.post(f"{url}{dormant.id}/limits/", {"allowed_ips": "203.0.113.0/24"} | state)

    assert response.status_code == 200
    page = html(response)
    row = row_of(page, dormant)
    assert row is not None
    assert "key-revoked" in row
    assert re.search(r'<p class="field-error" role="alert">[^<]+</p>', row)
    assert "Page 3 of 3" in page
    assert re.search(r'aria-current="page">All keys<', page)


def test_an_error_its_row_cannot_show_is_a_message_naming_the_key(client, project):
    """An expired key's row has no "Edit limits" dialog to reopen."""
    key, _ = make_key(KeyKind.SECRET, project=project, name="Payments CI")
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(hours=1))
    url = api_url(project)

    response = client.post(f"{url}{key.id}/limits/", {"allowed_ips": BAD_IPS, "page": "1"})

    assert response.status_code == 200
    assert flashes(html(response)) == [f"“Payments CI” ({key.prefix}…): {IP_ERROR}"]


# Replace, once --------------------------------------------------------------------------


@pytest.mark.usefixtures("before_the_sunset")  # legacy keys work on any day
def test_a_replaced_legacy_key_offers_no_second_replacement(client, project):
    legacy, _ = make_legacy_key(project, name="Old integration")
    url = api_url(project)
    response = client.post(f"{url}{legacy.id}/replace/", {"nonce": nonce_of(client, url)})
    minted_key_of(response)

    row = row_of(html(client.get(url)), legacy)

    assert "/replace/" not in row
    assert ">Replace<" not in row
    assert ">Replaced<" in row
    assert ">Edit limits<" in row and ">Revoke<" in row


@pytest.mark.parametrize("kind", list(KeyKind), ids=[kind.name.lower() for kind in KeyKind])
def test_a_keys_own_page_and_a_refused_action_keep_the_collection_current_in_the_sidebar(
    owner, project, organization, kind
):
    api_key, _ = make_key(kind, project=project)
    collection = key_page_url(kind, project)
    client = logged_in(owner)
    current = rf'<a href="{re.escape(collection)}" aria-current="page">'

    detail = html(client.get(f"{collection}{api_key.id}/"))
    refused = html(client.post(f"{collection}{api_key.id}/roll/", {"grace_seconds": "12345"}))

    assert re.search(current, detail) and re.search(current, refused)
