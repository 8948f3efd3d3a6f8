"""A key row's Roll or Origins refused: the page comes back with that dialog reopened
(`data-dialog-autoopen`), the values as typed, each invalid field `aria-invalid` and
described by its error; as "Edit limits" does. And the org's key lifetime policy: its
error is the input's description, and the input takes the focus."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from apps.apikeys.services import roll_key
from tests.apikeys.test_views import api_url, nonce_of, org_url, sdk_url
from tests.factories import make_key
from tests.pages import assert_no_inline_code, html, logged_in

pytestmark = pytest.mark.django_db

PAST = "2020-01-01T10:00"


@pytest.fixture
def client(owner):
    return logged_in(owner)


def dialog_of(page: str, dialog_id: str) -> str:
    match = re.search(rf'<dialog[^>]*id="{dialog_id}".*?</dialog>', page, re.S)
    assert match, f"no dialog #{dialog_id}"
    return match.group(0)


def opens_on_load(dialog: str) -> bool:
    opening = dialog[: dialog.index(">") + 1]
    return " open" in opening and "data-dialog-autoopen" in opening


def tag_of(dialog: str, pattern: str) -> str:
    match = re.search(rf"<(?:input|textarea)[^>]*{pattern}[^>]*>", dialog)
    assert match, pattern
    return match.group(0)


def descriptions(dialog: str, tag: str) -> list[str]:
    """The texts of the elements the tag's aria-describedby names (each must exist)."""
    ids = re.search(r'aria-describedby="([^"]*)"', tag).group(1).split()
    texts = []
    for element_id in ids:
        found = re.search(rf'<p[^>]*id="{re.escape(element_id)}"[^>]*>(.*?)</p>', dialog, re.S)
        assert found, f"aria-describedby names #{element_id}, which is not in the dialog"
        texts.append(re.sub(r"<[^>]+>", "", found.group(1)))
    return texts


def row_alerts(page: str, api_key) -> list[str]:
    row = re.search(rf'<tr[^>]*data-key-id="{api_key.id}".*?</tr>', page, re.S).group(0)
    return re.findall(r'<p class="field-error" role="alert">([^<]*)</p>', row)


def reopened(response, dialog_id: str) -> tuple[str, str]:
    """The page a refused dialog form answers (200, no inline code) and that dialog, which
    opens on load."""
    assert response.status_code == 200
    page = html(response)
    assert_no_inline_code(page)
    dialog = dialog_of(page, dialog_id)
    assert opens_on_load(dialog)
    return page, dialog


def roll(client, project, key, grace: str, expires_at: str, nonce: str | None = None):
    """POST the key's Roll form (a fresh nonce unless one is given)."""
    url = api_url(project)
    data = {"grace_seconds": grace, "expires_at": expires_at}
    return client.post(f"{url}{key.id}/roll/", data | {"nonce": nonce or nonce_of(client, url)})


def test_a_roll_to_a_past_expiry_reopens_the_dialog_with_the_values_and_the_error(client, project):
    key, _ = make_key(KeyKind.SECRET, project=project, name="Payments CI")

    page, dialog = reopened(roll(client, project, key, "86400", PAST), f"roll-{key.id}")

    expiry = tag_of(dialog, f'id="roll-expiry-{key.id}"')
    assert f'value="{PAST}"' in expiry, "the expiry as typed"
    assert 'aria-invalid="true"' in expiry and "autofocus" in expiry
    described = descriptions(dialog, expiry)
    assert any("future" in text for text in described), described
    checked = re.findall(r'<input type="radio" name="grace_seconds" value="(\d+)" checked', dialog)
    assert checked == ["86400"], "the grace as chosen"
    assert row_alerts(page, key) == [], "the error is in the dialog, not far down the row"
    assert not ApiKey.objects.filter(replaces=key).exists()
    # One dialog reopens: the other rows' and the key's other dialogs stay shut.
    assert page.count("data-dialog-autoopen") == 1


def test_a_roll_without_a_grace_marks_the_choice_invalid(client, project):
    key, _ = make_key(KeyKind.SECRET, project=project)

    page = html(roll(client, project, key, "12345", ""))

    dialog = dialog_of(page, f"roll-{key.id}")
    assert opens_on_load(dialog)
    radios = re.findall(r'<input type="radio" name="grace_seconds"[^>]*>', dialog)
    assert len(radios) == 4 and all('aria-invalid="true"' in radio for radio in radios)
    assert "autofocus" in radios[0]
    assert descriptions(dialog, radios[0]) == ["Choose when the old key stops working."]
    assert 'aria-invalid="true"' not in tag_of(dialog, f'id="roll-expiry-{key.id}"')


def test_an_expired_roll_form_says_so_in_its_reopened_dialog(client, project):
    key, _ = make_key(KeyKind.SECRET, project=project)

    page = html(roll(client, project, key, "0", "2099-01-01T00:00", nonce="forged"))

    dialog = dialog_of(page, f"roll-{key.id}")
    assert opens_on_load(dialog)
    alert = r'class="form-alert" role="alert"[^>]*>\s*<p>This form expired; try again.'
    assert re.search(alert, dialog)
    assert 'value="2099-01-01T00:00"' in tag_of(dialog, f'id="roll-expiry-{key.id}"')
    # A fresh nonce: sent again as it is, it rolls.
    nonce = re.search(r'name="nonce" value="([^"]+)"', dialog).group(1)
    rolled = roll(client, project, key, "0", "2099-01-01T00:00", nonce=nonce)
    assert rolled.status_code == 200 and ApiKey.objects.filter(replaces=key).exists()


def test_a_key_rolled_meanwhile_says_so_on_its_row(client, project, owner):
    """No Roll dialog is left to reopen: the message is on the row, as before."""
    key, _ = make_key(KeyKind.SECRET, project=project)
    url = api_url(project)
    nonce = nonce_of(client, url)
    roll_key(actor=owner, api_key=key, grace_seconds=3600)

    data = {"grace_seconds": "0", "expires_at": "", "nonce": nonce}
    page = html(client.post(f"{url}{key.id}/roll/", data))

    assert "data-dialog-autoopen" not in page
    assert row_alerts(page, key) == [
        "This key already has a successor: roll or revoke that one instead."
    ]


def test_a_bad_origin_reopens_the_origins_dialog_with_the_text_as_typed(client, project):
    key, _ = make_key(KeyKind.PUBLIC, project=project, name="Storefront")
    url = sdk_url(project)
    typed = "https://shop.example.com\nftp://bad"

    response = client.post(f"{url}{key.id}/origins/", {"allowed_origins": typed, "page": "1"})

    page, dialog = reopened(response, f"origins-dialog-{key.id}")
    textarea = tag_of(dialog, f'id="origins-{key.id}"')
    assert 'aria-invalid="true"' in textarea and "autofocus" in textarea
    assert re.search(rf'id="origins-{key.id}"[^>]*>{re.escape(typed)}</textarea>', dialog)
    described = descriptions(dialog, textarea)
    assert described[0].startswith("One https origin per line")
    assert any("ftp://bad" in text for text in described[1:]), described
    assert row_alerts(page, key) == []
    key.refresh_from_db()
    assert key.allowed_origins == []


def test_origins_that_save_still_go_back_to_the_list(client, project):
    key, _ = make_key(KeyKind.PUBLIC, project=project)
    url = sdk_url(project)

    response = client.post(f"{url}{key.id}/origins/", {"allowed_origins": "https://a.example"})

    assert response.status_code == 302 and response["Location"] == url
    key.refresh_from_db()
    assert key.allowed_origins == ["https://a.example"]


def test_an_origins_error_its_row_cannot_show_is_a_message_naming_the_key(client, project):
    """An expired key's row has no Origins dialog to reopen."""
    key, _ = make_key(KeyKind.PUBLIC, project=project, name="Storefront")
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(hours=1))

    page = html(client.post(f"{sdk_url(project)}{key.id}/origins/", {"allowed_origins": "x"}))

    assert "data-dialog-autoopen" not in page
    assert "Storefront" in " ".join(re.findall(r'<p class="flash flash-error">([^<]*)</p>', page))


def test_the_lifetime_policy_error_describes_its_input_which_takes_the_focus(client, organization):
    response = client.post(f"{org_url(organization)}policy/", {"key_max_lifetime_days": "0"})

    assert response.status_code == 200
    page = html(response)
    section = re.search(r"<section[^>]*data-key-policy.*?</section>", page, re.S).group(0)
    field = tag_of(section, 'name="key_max_lifetime_days"')
    assert 'aria-invalid="true"' in field and "autofocus" in field
    ids = re.search(r'aria-describedby="([^"]*)"', field).group(1).split()
    assert ids[0] == "policy-help" and len(ids) == 2
    error = re.search(rf'<p class="field-error" id="{ids[1]}">([^<]*)</p>', section)
    assert error and "greater than or equal to 1" in error.group(1)
    # Unbound, nothing takes the focus.
    assert "autofocus" not in html(client.get(org_url(organization)))


def test_every_dialog_opener_says_it_opens_a_dialog(client, project):
    make_key(KeyKind.SECRET, project=project)
    make_key(KeyKind.PUBLIC, project=project)

    for url in (api_url(project), sdk_url(project)):
        openers = re.findall(r"<button[^>]*data-dialog-open=[^>]*>", html(client.get(url)))
        assert len(openers) >= 2  # Roll, Edit limits (and Origins)
        assert all('aria-haspopup="dialog"' in opener for opener in openers), openers
