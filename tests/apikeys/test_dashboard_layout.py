"""The server side of the key pages' layout fixes: every field error of a form at once, the
list's links landing on the list (#keys), and the Roll and Origins forms, now in native
<dialog>s, posting the same fields to the same addresses."""

from __future__ import annotations

import re
from datetime import timedelta
from html.parser import HTMLParser

import pytest
from django.utils import timezone

from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from apps.audit.models import AuditEvent
from apps.audit.services import Action, record_event
from tests import factories
from tests.apikeys.test_views import api_url, mint, minted_key_of, nonce_of, org_url, sdk_url
from tests.factories import make_key
from tests.pages import assert_no_inline_code, html, logged_in

pytestmark = pytest.mark.django_db

BAD_IPS = "not-an-ip\n10.0.0.0/33"
IP_ERRORS = ["Not a CIDR or IP address: not-an-ip", "Not a CIDR or IP address: 10.0.0.0/33"]
RATE_ERROR = "Give both numbers, or leave both empty for no limit."


def field_errors(page: str) -> list[str]:
    return re.findall(r'<p class="field-error"[^>]*>([^<]*)</p>', page)


def row_of(page: str, api_key) -> str:
    match = re.search(rf'<tr[^>]*data-key-id="{api_key.id}".*?</tr>', page, re.S)
    assert match, f"no row for {api_key.name}"
    return match.group(0)


class _Forms(HTMLParser):
    """The forms of a page: action, method, and the fields a browser would send, as
    (name, value) pairs (checked radios and checkboxes only; textareas with their text)."""

    def __init__(self):
        super().__init__()
        self.forms: list[dict] = []
        self._form: dict | None = None
        self._textarea: str | None = None
        self._text = ""
        self._containers: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag in ("dialog", "details"):
            self._containers.append(tag)
        if tag == "form":
            self._form = {
                "action": attributes.get("action"),
                "method": (attributes.get("method") or "get").lower(),
                "fields": [],
                "inputs": [],
                "in": list(self._containers),
            }
            self.forms.append(self._form)
        elif self._form is not None and tag == "input":
            self._form["inputs"].append(attributes)
            kind = attributes.get("type", "text")
            if kind in ("radio", "checkbox") and "checked" not in attributes:
                return
            if attributes.get("name"):
                self._form["fields"].append((attributes["name"], attributes.get("value") or ""))
        elif self._form is not None and tag == "textarea":
            self._textarea, self._text = attributes.get("name"), ""

    def handle_data(self, data):
        if self._textarea is not None:
            self._text += data

    def handle_endtag(self, tag):
        if tag in ("dialog", "details") and self._containers:
            self._containers.pop()
        if tag == "textarea" and self._form is not None and self._textarea:
            self._form["fields"].append((self._textarea, self._text.removeprefix("\n")))
            self._textarea = None
        if tag == "form":
            self._form = None


def forms_of(markup: str) -> list[dict]:
    parser = _Forms()
    parser.feed(markup)
    return parser.forms


def assert_opens_a_dialog(row: str, label: str) -> None:
    """The row's `label` button opens a form dialog of the same row (no <details>)."""
    opener = re.search(
        rf'<button type="button"[^>]*data-dialog-open="([^"]+)"[^>]*>{label}</button>', row
    )
    assert opener, f"a {label} button opening a dialog"
    assert re.search(rf'<dialog class="form-dialog" id="{opener.group(1)}"', row)


def form_posting_to(markup: str, action: str) -> dict:
    found = [form for form in forms_of(markup) if form["action"].endswith(f"/{action}/")]
    assert len(found) == 1, f"one {action} form expected, found {len(found)}"
    return found[0]


def post_data(form: dict) -> dict[str, list[str]]:
    data: dict[str, list[str]] = {}
    for name, value in form["fields"]:
        data.setdefault(name, []).append(value)
    return data


# 7. Every field error at once


def test_edit_limits_shows_the_rate_limit_error_and_every_ip_error_at_once(owner, project):
    api_key, _ = make_key(KeyKind.SECRET, project=project, name="Deploys")
    client = logged_in(owner)

    response = client.post(
        f"{api_url(project)}{api_key.id}/limits/",
        {"rate_limit_requests": "100", "rate_limit_seconds": "", "allowed_ips": BAD_IPS},
    )

    assert response.status_code == 200
    row = row_of(html(response), api_key)
    assert re.search(rf'<dialog[^>]*id="limits-{api_key.id}"[^>]*data-dialog-autoopen', row)
    errors = field_errors(row)
    assert RATE_ERROR in errors
    assert all(error in errors for error in IP_ERRORS), errors
    api_key.refresh_from_db()
    assert (api_key.rate_limit_requests, api_key.allowed_ips) == (None, [])
    assert not AuditEvent.objects.filter(action="key.updated").exists()


def test_edit_limits_with_good_ips_still_saves_them_normalized(owner, project):
    api_key, _ = make_key(KeyKind.SECRET, project=project)

    logged_in(owner).post(
        f"{api_url(project)}{api_key.id}/limits/",
        {"rate_limit_requests": "", "rate_limit_seconds": "", "allowed_ips": "10.1.2.3/8"},
    )

    api_key.refresh_from_db()
    assert api_key.allowed_ips == ["10.0.0.0/8"]


def test_the_create_form_shows_every_field_error_at_once(owner, project):
    client = logged_in(owner)

    response = mint(
        client,
        api_url(project),
        name="",
        permissions=[],
        expires_at=(timezone.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"),
        rate_limit_requests="5",
        allowed_ips=BAD_IPS,
    )

    assert response.status_code == 200
    errors = field_errors(html(response))
    assert any(error.startswith("Must be in the future: it is now ") for error in errors)
    for expected in [
        "This field is required.",
        "Choose at least one permission.",
        RATE_ERROR,
        *IP_ERRORS,
    ]:
        assert expected in errors, (expected, errors)
    assert not ApiKey.objects.exists()


def test_the_sdk_create_form_shows_a_bad_origin_with_the_other_errors(owner, project):
    response = mint(
        logged_in(owner),
        sdk_url(project),
        name="",
        rate_limit_seconds="60",
        allowed_origins="http://insecure.example",
    )

    errors = field_errors(html(response))
    assert "This field is required." in errors and RATE_ERROR in errors
    assert any("Not an origin of the form https://host[:port]" in e for e in errors), errors
    assert not ApiKey.objects.exists()


def test_a_valid_create_form_still_mints(owner, project):
    response = mint(
        logged_in(owner),
        api_url(project),
        expires_at=(timezone.now() + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M"),
        allowed_ips="203.0.113.7",
    )

    minted_key_of(response)
    assert ApiKey.objects.get().allowed_ips == ["203.0.113.7/32"]


# 6. The list's links land on the list


def test_the_keys_card_is_the_anchor_of_the_filter_and_page_links(owner, project):
    factories.bulk_secret_keys(project, 51)
    client = logged_in(owner)
    url = api_url(project)

    page = html(client.get(url))

    assert re.search(r'<section class="card" id="keys"', page)
    segments = re.findall(r'<a class="segment" href="([^"]*)"', page)
    assert segments == [f"{url}#keys", f"{url}?unused=30#keys", f"{url}?unused=90#keys"]
    assert 'href="?page=2#keys" rel="next"' in page
    second = html(client.get(f"{url}?page=2"))
    assert 'href="?page=1#keys" rel="prev"' in second


def test_a_filtered_list_keeps_its_filter_and_the_anchor_on_its_pages(owner, project):
    old = timezone.now() - timedelta(days=120)
    factories.bulk_secret_keys(project, 51, created_at=old)

    page = html(logged_in(owner).get(api_url(project) + "?unused=30"))

    assert 'href="?unused=30&amp;page=2#keys"' in page


def test_an_empty_filter_links_back_to_the_whole_list(owner, project):
    make_key(KeyKind.SECRET, project=project)  # new, so not unused for 30 days

    page = html(logged_in(owner).get(api_url(project) + "?unused=30"))

    assert f'<a href="{api_url(project)}#keys">Show all keys</a>' in page


def test_the_audit_logs_pages_have_no_key_anchor(owner, organization):
    for i in range(55):
        record_event(
            action=Action.KEY_MINTED,
            organization_id=organization.id,
            target_type="key",
            target_label=f"evt-{i:02d}",
        )
    client = logged_in(owner)
    log = f"/orgs/{organization.id}/audit-log/"

    assert re.search(r'href="\?before=[0-9a-f-]{36}" rel="next"', html(client.get(log)))
    filtered = html(client.get(log + "?action=key.minted"))
    assert re.search(r'href="\?action=key.minted&amp;before=[0-9a-f-]{36}" rel="next"', filtered)
    assert "#keys" not in filtered


# 1. Roll and Origins open native <dialog>s, with the same forms


@pytest.mark.parametrize(
    ("kind", "url_of"),
    [
        (KeyKind.PUBLIC, lambda p: sdk_url(p)),
        (KeyKind.SECRET, lambda p: api_url(p)),
        (KeyKind.ORGANIZATION, lambda p: org_url(p.organization)),
    ],
    ids=["sdk", "secret", "org"],
)
def test_the_roll_form_is_in_a_dialog_and_posts_the_same_fields(owner, project, kind, url_of):
    where = (
        {"organization": project.organization}
        if kind is KeyKind.ORGANIZATION
        else {"project": project}
    )
    api_key, _ = make_key(kind, name="Rollable", **where)
    client = logged_in(owner)
    url = url_of(project)

    page = html(client.get(url))
    assert_no_inline_code(page)
    row = row_of(page, api_key)
    assert "<details" not in row and "<summary" not in row
    assert_opens_a_dialog(row, "Roll")

    form = form_posting_to(row, "roll")
    assert form["action"] == f"{url}{api_key.id}/roll/" and form["method"] == "post"
    assert form["in"] == ["dialog"]
    radios = [i for i in form["inputs"] if i.get("name") == "grace_seconds"]
    assert [(r["value"], "checked" in r) for r in radios] == [
        ("0", False),
        ("3600", True),
        ("86400", False),
        ("604800", False),
    ]
    names = {name for name, _ in form["fields"]}
    expected = {"csrfmiddlewaretoken", "nonce", "page", "grace_seconds"}
    if kind is not KeyKind.PUBLIC:
        expected.add("expires_at")
    assert names == expected

    # What the browser sends (Roll key, the 1 hour default) rolls the key.
    response = client.post(form["action"], post_data(form))
    assert response.status_code == 200
    minted_key_of(response)
    successor = ApiKey.objects.get(replaces=api_key)
    assert successor.name == "Rollable"


def test_a_roll_form_on_a_filtered_page_carries_the_list_state(owner, project):
    old = timezone.now() - timedelta(days=120)
    factories.bulk_secret_keys(project, 51, created_at=old)
    dormant = ApiKey.objects.filter(project=project).order_by("created_at", "id").first()

    page = html(logged_in(owner).get(api_url(project) + "?unused=30&page=2"))

    form = form_posting_to(row_of(page, dormant), "roll")
    assert dict(form["fields"])["page"] == "2"
    assert dict(form["fields"])["unused"] == "30"


def test_the_origins_form_is_in_a_dialog_and_posts_the_same_fields(owner, project):
    api_key, _ = make_key(
        KeyKind.PUBLIC,
        project=project,
        name="Web shop",
        allowed_origins=["https://a.example.com", "https://b.example.com"],
    )
    client = logged_in(owner)
    url = sdk_url(project)

    row = row_of(html(client.get(url)), api_key)
    assert_opens_a_dialog(row, "Origins")
    form = form_posting_to(row, "origins")
    assert form["action"] == f"{url}{api_key.id}/origins/" and form["method"] == "post"
    assert form["in"] == ["dialog"]
    data = post_data(form)
    assert set(data) == {"csrfmiddlewaretoken", "page", "allowed_origins"}  # no nonce, as before
    assert data["page"] == ["1"]
    assert data["allowed_origins"] == ["https://a.example.com\nhttps://b.example.com"]
    # The textarea keeps its id and its label.
    assert f'<label for="origins-{api_key.id}">Allowed origins</label>' in row
    assert f'id="origins-{api_key.id}"' in row

    response = client.post(form["action"], data | {"allowed_origins": ["https://c.example.com"]})
    assert response.status_code == 302
    api_key.refresh_from_db()
    assert api_key.allowed_origins == ["https://c.example.com"]


def test_the_dialog_ids_are_unique_on_the_page(owner, project):
    for name in ("One", "Two"):
        make_key(KeyKind.PUBLIC, project=project, name=name)

    page = html(logged_in(owner).get(sdk_url(project)))

    ids = re.findall(r'\sid="([^"]+)"', page)
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    for target in re.findall(r'data-dialog-open="([^"]+)"', page):
        assert re.search(rf'<dialog[^>]*id="{target}"', page), target


def test_a_roll_refused_on_the_server_still_shows_its_error_on_the_row(owner, project):
    api_key, _ = make_key(KeyKind.SECRET, project=project)
    client = logged_in(owner)
    url = api_url(project)

    response = client.post(
        f"{url}{api_key.id}/roll/", {"grace_seconds": "12345", "nonce": nonce_of(client, url)}
    )

    assert "Choose when the old key stops working." in field_errors(row_of(html(response), api_key))
