"""Key pages: Project → SDK Keys, Project → API Keys, Organization → API Keys."""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.template.loader import render_to_string
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.accounts.templatetags.dashboard import breakable_email, relative, utc_text
from apps.apikeys import keyformat
from apps.apikeys.forms import KeyCreateForm
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey, KeyScope, KeyType
from apps.audit.models import AuditEvent
from apps.orgs.models import Organization
from apps.projects.models import Project
from core.times import iso
from tests import factories
from tests.factories import make_key
from tests.pages import CONFIRMED, assert_no_inline_code, html, logged_in
from tests.reliability.helpers import hung_redis

pytestmark = pytest.mark.django_db

KEY_IN_CODE = re.compile(
    r"<code[^>]*data-secret[^>]*>((?:ss_pub_|ss_secret_|ss_org_)[0-9A-Za-z]+)</code>"
)
NONCE = re.compile(r'name="nonce" value="([^"]+)"')


def sdk_url(project):
    return f"/projects/{project.id}/sdk-keys/"


def api_url(project):
    return f"/projects/{project.id}/api-keys/"


def org_url(organization):
    return f"/orgs/{organization.id}/api-keys/"


@pytest.fixture
def pages(project):
    """(kind, collection URL) of the three key pages of the `project` fixture."""
    return [
        (KeyKind.PUBLIC, sdk_url(project)),
        (KeyKind.SECRET, api_url(project)),
        (KeyKind.ORGANIZATION, org_url(project.organization)),
    ]


def minted_key_of(response) -> str:
    keys = KEY_IN_CODE.findall(html(response))
    assert len(keys) == 1, "the new key must be shown exactly once, in the dialog's <code>"
    return keys[0]


def nonce_of(client: Client, url: str) -> str:
    return NONCE.search(html(client.get(url))).group(1)


def mint(client: Client, url: str, **data):
    data.setdefault("name", "CI deploys")
    data.setdefault("permissions", ["analysis:read", "config:read"])
    data.setdefault("nonce", nonce_of(client, url))
    return client.post(url, data)


#: Legacy keys on these pages carry read permissions only.
make_legacy_key = functools.partial(
    factories.make_legacy_key, permissions=["analysis:read", "config:read"]
)


def bulk_secret_keys(project, count: int, actor=None) -> list[ApiKey]:
    """Keys created a second apart, every other one used a minute apart."""
    now = timezone.now()
    return factories.bulk_secret_keys(
        project,
        count,
        created_by=actor,
        each=lambda i: {
            "created_at": now - timedelta(seconds=i),
            "last_used_at": now - timedelta(minutes=i) if i % 2 else None,
        },
    )


# Who sees what -----------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "admin", "member", "viewer"])
def test_every_key_page_renders_for_every_role(request, role, pages):
    client = logged_in(request.getfixturevalue(role))
    for _kind, url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        assert response["Cache-Control"] == "no-store"
        assert_no_inline_code(html(response))


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_managers_see_the_create_form_and_key_buttons(request, role, project, pages):
    for kind, _url in pages:
        make_key(kind, project=project, name=f"{kind.name} key")
    client = logged_in(request.getfixturevalue(role))
    for _kind, url in pages:
        page = html(client.get(url))
        assert "Create key" in page
        assert 'name="name"' in page
        assert ">Revoke</button>" in page
        assert ">Roll</button>" in page


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_members_and_viewers_see_the_list_without_form_or_buttons(request, role, project, pages):
    for kind, _url in pages:
        make_key(kind, project=project, name=f"{kind.name} key")
    client = logged_in(request.getfixturevalue(role))
    for kind, url in pages:
        page = html(client.get(url))
        assert f"{kind.name} key" in page
        assert "Create key" not in page
        content = page.split("</header>", 1)[1].split('action="/logout/"')[0]
        # Only the page's confirmation dialog (its buttons only close it) and the download
        # (a POST: it counts against the hour's downloads) have a form.
        forms = re.findall(r'<form(?! method="dialog")[^>]*>', content)
        assert forms == [f'<form method="post" action="{url}export.csv" data-download>']
        for action in (">Revoke<", ">Roll<", ">Replace<", ">Origins<"):
            assert action not in page


def test_outsider_gets_404_on_every_key_page_and_action(outsider, project):
    secret, _ = make_key(KeyKind.SECRET, project=project)
    public, _ = make_key(KeyKind.PUBLIC, project=project)
    org_key, _ = make_key(KeyKind.ORGANIZATION, organization=project.organization)
    client = logged_in(outsider)
    urls = [sdk_url(project), api_url(project), org_url(project.organization)]
    for url in urls:
        assert client.get(url).status_code == 404
        assert client.post(url, {"name": "x", "permissions": ["analysis:read"]}).status_code == 404
    actions = [
        f"{sdk_url(project)}{public.id}/revoke/",
        f"{sdk_url(project)}{public.id}/roll/",
        f"{sdk_url(project)}{public.id}/origins/",
        f"{api_url(project)}{secret.id}/revoke/",
        f"{api_url(project)}{secret.id}/roll/",
        f"{api_url(project)}{secret.id}/replace/",
        f"{org_url(project.organization)}{org_key.id}/revoke/",
        f"{org_url(project.organization)}{org_key.id}/roll/",
    ]
    for url in actions:
        assert client.post(url, {"grace_seconds": "0", **CONFIRMED}).status_code == 404, url
    assert not ApiKey.objects.filter(revoked_at__isnull=False).exists()
    assert ApiKey.objects.count() == 3


def test_anonymous_visitor_is_sent_to_login_with_the_way_back(project):
    response = Client().get(sdk_url(project))
    assert response.status_code == 302
    assert response["Location"] == f"/login/?next=%2Fprojects%2F{project.id}%2Fsdk-keys%2F"


@pytest.mark.parametrize(
    ("referer", "back_to"),
    [
        (
            "http://testserver/projects/{id}/sdk-keys/?unused=30",
            "/projects/{id}/sdk-keys/?unused=30",
        ),
        ("https://evil.example/projects/{id}/sdk-keys/", None),
        (None, None),
    ],
)
def test_a_form_sent_after_the_session_ended_says_so_and_goes_back_to_its_page(
    project, referer, back_to
):
    """Found by a multi-tab audit: a bare login page, then the home page; the form's own
    URL answers POST only, so the way back is the page it was sent from (this site's)."""
    client = Client()
    extra = {"HTTP_REFERER": referer.format(id=project.id)} if referer else {}

    response = client.post(sdk_url(project), {"name": "CI", **CONFIRMED}, **extra)

    expected = "/login/"
    if back_to:
        expected += "?" + urlencode({"next": back_to.format(id=project.id)})
    assert response.status_code == 302 and response["Location"] == expected
    assert "You were logged out, so that form was not sent." in html(client.get("/login/"))
    assert not ApiKey.objects.exists()


def test_unknown_project_is_404(owner):
    import uuid

    assert logged_in(owner).get(f"/projects/{uuid.uuid4()}/api-keys/").status_code == 404


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_members_and_viewers_cannot_mint_revoke_roll_or_replace(request, role, project, pages):
    owner_client = logged_in(request.getfixturevalue("owner"))
    nonce = nonce_of(owner_client, sdk_url(project))
    keys = {kind: make_key(kind, project=project)[0] for kind, _ in pages}
    legacy, _ = make_legacy_key(project)
    before = ApiKey.objects.count()
    client = logged_in(request.getfixturevalue(role))
    for kind, url in pages:
        response = client.post(
            url, {"name": "sneaky", "permissions": ["config:write"], "nonce": nonce}
        )
        assert response.status_code == 403, url
        key_id = keys[kind].id
        for action in ("revoke", "roll"):
            response = client.post(f"{url}{key_id}/{action}/", {"grace_seconds": "0", **CONFIRMED})
            assert response.status_code == 403, (url, action)
    assert client.post(f"{api_url(project)}{legacy.id}/replace/").status_code == 403
    origins = client.post(
        f"{sdk_url(project)}{keys[KeyKind.PUBLIC].id}/origins/",
        {"allowed_origins": "https://evil.example"},
    )
    assert origins.status_code == 403
    assert ApiKey.objects.count() == before
    assert not ApiKey.objects.filter(revoked_at__isnull=False).exists()
    assert ApiKey.objects.get(id=keys[KeyKind.PUBLIC].id).allowed_origins == []
    assert not ApiKey.objects.filter(expires_at__isnull=False).exists()


# Minting -----------------------------------------------------------------------


def test_minted_key_is_shown_once_in_a_dialog_and_never_stored(owner, project):
    client = logged_in(owner)
    response = mint(client, api_url(project), name="Deploy bot")
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    page = html(response)
    key = minted_key_of(response)
    assert page.count(key) == 1
    assert re.search(r"<dialog open[^>]*data-secret-dialog", page)
    assert "will not be shown again" in page
    assert "data-copy-target" in page
    api_key = ApiKey.objects.get(name="Deploy bot")
    assert api_key.digest == keyformat.digest(key)
    assert key.startswith("ss_secret_") and api_key.prefix == key[: len("ss_secret_") + 8]
    assert api_key.permissions == ["analysis:read", "config:read"]
    assert api_key.created_by == owner
    for cookie in response.cookies.values():
        assert key not in cookie.value
    for cookie in client.cookies.values():
        assert key not in cookie.value
    assert all(key not in str(value) for value in client.session.values())
    assert key not in str(list(AuditEvent.objects.values()))
    reloaded = client.get(api_url(project))
    assert key not in html(reloaded)
    assert "data-secret-dialog" not in html(reloaded)


def test_each_page_mints_its_own_kind(owner, project, pages):
    client = logged_in(owner)
    for kind, url in pages:
        key = minted_key_of(mint(client, url, name=f"made on {kind.name}"))
        assert key.startswith(kind.prefix)
        api_key = ApiKey.objects.get(digest=keyformat.digest(key))
        assert api_key.organization == project.organization
        if kind is KeyKind.ORGANIZATION:
            assert api_key.project is None and api_key.scope == KeyScope.ORGANIZATION
        else:
            assert api_key.project == project


def test_sdk_key_permissions_are_locked_whatever_the_form_sends(owner, project):
    client = logged_in(owner)
    page = html(client.get(sdk_url(project)))
    for permission in ("analysis:create", "analysis:read"):
        checkbox = re.search(rf'<input type="checkbox"[^>]*value="{permission}"[^>]*>', page)
        assert "checked" in checkbox.group(0) and "disabled" in checkbox.group(0)
    response = mint(client, sdk_url(project), permissions=["config:write"])
    key = minted_key_of(response)
    api_key = ApiKey.objects.get(digest=keyformat.digest(key))
    assert sorted(api_key.permissions) == ["analysis:create", "analysis:read"]
    assert api_key.type == KeyType.PUBLIC


def test_sdk_key_can_be_bound_to_origins_at_mint(owner, project):
    client = logged_in(owner)
    response = mint(
        client, sdk_url(project), allowed_origins="https://shop.example.com\n\nhttps://a.example"
    )
    key = minted_key_of(response)
    api_key = ApiKey.objects.get(digest=keyformat.digest(key))
    assert api_key.allowed_origins == ["https://shop.example.com", "https://a.example"]


def test_bad_origin_is_reported_next_to_the_field_and_nothing_is_minted(owner, project):
    response = mint(logged_in(owner), sdk_url(project), allowed_origins="http://insecure.example")
    assert response.status_code == 200
    assert "Not an origin of the form https://host[:port]" in html(response)
    assert not ApiKey.objects.exists()


def test_replayed_mint_post_mints_nothing_and_redirects_to_the_list(owner, project):
    client = logged_in(owner)
    url = api_url(project)
    data = {"name": "Once", "permissions": ["analysis:read"], "nonce": nonce_of(client, url)}
    first = client.post(url, data)
    minted_key_of(first)
    replay = client.post(url, data)
    assert replay.status_code == 302
    assert replay["Location"] == url
    assert ApiKey.objects.filter(name="Once").count() == 1
    followed = client.get(url)
    assert "already submitted" in html(followed)
    assert not KEY_IN_CODE.search(html(followed))


def test_a_mint_form_older_than_its_nonces_life_asks_again(owner, project, time_machine):
    """A form's nonce lives 12 hours (a page left open overnight asks again)."""
    client = logged_in(owner)
    nonce = nonce_of(client, api_url(project))
    time_machine.move_to(timezone.now() + timedelta(hours=12, minutes=1))

    response = mint(logged_in(owner), api_url(project), nonce=nonce)

    assert response.status_code == 200 and "This form expired" in html(response)
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize("nonce", ["", "forged", None])
def test_mint_without_a_valid_nonce_asks_again_and_mints_nothing(owner, project, nonce):
    client = logged_in(owner)
    data = {"name": "No nonce", "permissions": ["analysis:read"]}
    if nonce is not None:
        data["nonce"] = nonce
    response = client.post(api_url(project), data)
    assert response.status_code == 200
    assert "This form expired" in html(response)
    assert not ApiKey.objects.exists()


def test_nonce_of_another_user_is_refused(owner, admin, project):
    stolen = nonce_of(logged_in(admin), api_url(project))
    response = logged_in(owner).post(
        api_url(project), {"name": "x", "permissions": ["analysis:read"], "nonce": stolen}
    )
    assert "This form expired" in html(response)
    assert not ApiKey.objects.exists()


def test_mint_errors_are_shown_next_to_their_fields(owner, project):
    response = mint(logged_in(owner), api_url(project), name="", permissions=[])
    page = html(response)
    assert response.status_code == 200
    assert "This field is required." in page
    assert not ApiKey.objects.exists()
    response = mint(logged_in(owner), api_url(project), name="No perms", permissions=[])
    assert "Choose at least one permission." in html(response)
    assert not ApiKey.objects.exists()


def test_expiry_is_read_as_utc_and_must_be_in_the_future(owner, project):
    client = logged_in(owner)
    future = (timezone.now() + timedelta(days=30)).astimezone(UTC).replace(second=0, microsecond=0)
    response = mint(client, api_url(project), expires_at=future.strftime("%Y-%m-%dT%H:%M"))
    api_key = ApiKey.objects.get(digest=keyformat.digest(minted_key_of(response)))
    assert api_key.expires_at == future
    past = mint(client, api_url(project), name="past", expires_at="2001-01-01T00:00")
    assert "Must be in the future: it is now" in html(past)
    assert not ApiKey.objects.filter(name="past").exists()


def test_an_expiry_refused_as_past_says_the_time_now_in_utc(owner, project, time_machine):
    """Someone in UTC-8 who meant 09:00 their time, at 05:00 there (13:00 UTC), learns why
    "09:00" is not in the future: the field reads UTC, and it is 13:00 there."""
    time_machine.move_to(datetime(2027, 3, 4, 13, 5, 30, tzinfo=UTC), tick=False)

    past = mint(logged_in(owner), api_url(project), name="past", expires_at="2027-03-04T09:00")

    assert "Must be in the future: it is now 4 Mar 2027, 13:05 UTC." in html(past)
    assert not ApiKey.objects.filter(name="past").exists()


def test_key_name_is_escaped(owner, project):
    make_key(KeyKind.SECRET, project=project, name='<script>alert("x")</script>')
    page = html(logged_in(owner).get(api_url(project)))
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert" in page


# Revoke, roll, replace, origins ------------------------------------------------------


def test_revoke_from_the_page_kills_the_key(owner, project):
    api_key, _ = make_key(KeyKind.SECRET, project=project, name="Doomed")
    client = logged_in(owner)
    response = client.post(f"{api_url(project)}{api_key.id}/revoke/", CONFIRMED)
    assert response.status_code == 302 and response["Location"] == api_url(project)
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None and api_key.revoked_by == owner
    page = html(client.get(api_url(project)))
    assert "Revoked" in page
    assert f"{api_url(project)}{api_key.id}/revoke/" not in page


def test_revoke_form_asks_for_confirmation(owner, project):
    make_key(KeyKind.SECRET, project=project, name="Confirm me")
    page = html(logged_in(owner).get(api_url(project)))
    assert re.search(r'<form[^>]*/revoke/"[^>]*data-confirm="Revoke', page)


def test_key_of_another_collection_is_404(owner, project, other_project):
    public, _ = make_key(KeyKind.PUBLIC, project=project)
    foreign, _ = make_key(KeyKind.SECRET, project=other_project)
    client = logged_in(owner)
    assert client.post(f"{api_url(project)}{public.id}/revoke/", CONFIRMED).status_code == 404
    assert client.post(f"{api_url(project)}{foreign.id}/revoke/", CONFIRMED).status_code == 404
    assert (
        client.post(f"{org_url(project.organization)}{public.id}/revoke/", CONFIRMED).status_code
        == 404
    )
    assert not ApiKey.objects.filter(revoked_at__isnull=False).exists()


def test_revoke_is_post_only(owner, project):
    api_key, _ = make_key(KeyKind.SECRET, project=project)
    assert logged_in(owner).get(f"{api_url(project)}{api_key.id}/revoke/").status_code == 405
    api_key.refresh_from_db()
    assert api_key.revoked_at is None


def test_roll_shows_the_successor_once_and_expires_the_old_key(owner, project):
    old, _ = make_key(KeyKind.PUBLIC, project=project, name="Storefront")
    ApiKey.objects.filter(pk=old.pk).update(allowed_origins=["https://shop.example.com"])
    client = logged_in(owner)
    url = sdk_url(project)
    nonce = nonce_of(client, url)
    before = timezone.now()
    response = client.post(f"{url}{old.id}/roll/", {"grace_seconds": "86400", "nonce": nonce})
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    new_key = minted_key_of(response)
    assert f'data-clean-url="{url}"' in html(response)
    successor = ApiKey.objects.get(digest=keyformat.digest(new_key))
    assert successor.replaces_id == old.id and successor.name == "Storefront"
    assert successor.allowed_origins == ["https://shop.example.com"]
    old.refresh_from_db()
    assert before + timedelta(hours=23) < old.expires_at <= timezone.now() + timedelta(hours=24)
    replay = client.post(f"{url}{old.id}/roll/", {"grace_seconds": "86400", "nonce": nonce})
    assert replay.status_code == 302
    assert ApiKey.objects.filter(replaces=old).count() == 1
    page = html(client.get(url))
    assert "Expiring" in page
    assert f"replaces <code>{old.prefix}…</code>" in page
    # rolled once: its row offers no second roll, and a second form post is refused
    assert (
        f'action="{url}{old.id}/roll/"' not in page
        and '>Rolled<span class="visually-hidden">:' in page
    )
    again = client.post(
        f"{url}{old.id}/roll/", {"grace_seconds": "3600", "nonce": nonce_of(client, url)}
    )
    assert "already has a successor" in html(again)
    assert ApiKey.objects.filter(replaces=old).count() == 1


def test_roll_now_expires_the_old_key_at_once(owner, project):
    old, _ = make_key(KeyKind.ORGANIZATION, organization=project.organization)
    client = logged_in(owner)
    url = org_url(project.organization)
    response = client.post(
        f"{url}{old.id}/roll/", {"grace_seconds": "0", "nonce": nonce_of(client, url)}
    )
    minted_key_of(response)
    assert f"<code>{old.prefix}…</code> stopped working when it was rolled" in html(response)
    assert "keeps working until" not in html(response)  # it said so, "(just now)" (an audit)
    old.refresh_from_db()
    assert old.expires_at <= timezone.now()
    assert "Expired" in html(client.get(url))


def test_roll_with_an_unknown_grace_is_refused(owner, project):
    old, _ = make_key(KeyKind.SECRET, project=project)
    client = logged_in(owner)
    url = api_url(project)
    response = client.post(
        f"{url}{old.id}/roll/", {"grace_seconds": "999", "nonce": nonce_of(client, url)}
    )
    assert response.status_code == 200
    assert "Choose when the old key stops working." in html(response)
    assert ApiKey.objects.count() == 1


@pytest.mark.usefixtures("before_the_sunset")  # legacy keys work on any day
def test_legacy_key_is_replaced_by_a_new_secret_key_and_keeps_working(owner, project):
    legacy, _ = make_legacy_key(project, name="Old integration")
    client = logged_in(owner)
    url = api_url(project)
    response = client.post(f"{url}{legacy.id}/replace/", {"nonce": nonce_of(client, url)})
    assert response.status_code == 200
    new_key = minted_key_of(response)
    assert new_key.startswith("ss_secret_")
    successor = ApiKey.objects.get(digest=keyformat.digest(new_key))
    assert successor.replaces_id == legacy.id
    assert successor.name == "Old integration"
    assert successor.permissions == legacy.permissions
    assert successor.project == project
    legacy.refresh_from_db()
    assert legacy.revoked_at is None and legacy.expires_at is None
    assert f"replaces <code>{legacy.prefix}…</code>" in html(client.get(url))


def test_origins_editor_updates_an_sdk_key(owner, project):
    public, _ = make_key(KeyKind.PUBLIC, project=project)
    client = logged_in(owner)
    url = f"{sdk_url(project)}{public.id}/origins/"
    response = client.post(url, {"allowed_origins": "https://A.example.com:443\nhttps://b.example"})
    assert response.status_code == 302
    public.refresh_from_db()
    assert public.allowed_origins == ["https://a.example.com", "https://b.example"]
    bad = client.post(url, {"allowed_origins": "ftp://nope"})
    assert bad.status_code == 200
    assert "Not an origin of the form" in html(bad)
    public.refresh_from_db()
    assert public.allowed_origins == ["https://a.example.com", "https://b.example"]
    client.post(url, {"allowed_origins": ""})
    public.refresh_from_db()
    assert public.allowed_origins == []


# The list ------------------------------------------------------------------------


def test_list_shows_prefix_permissions_creator_expiry_last_use_and_status(owner, project):
    now = timezone.now()
    used, _ = make_key(KeyKind.SECRET, project=project, name="Used", actor=owner)
    ApiKey.objects.filter(pk=used.pk).update(last_used_at=now - timedelta(minutes=3))
    expiring, _ = make_key(
        KeyKind.SECRET, project=project, name="Soon", expires_at=now + timedelta(days=2)
    )
    later, _ = make_key(
        KeyKind.SECRET, project=project, name="Later", expires_at=now + timedelta(days=60)
    )
    revoked, _ = make_key(KeyKind.SECRET, project=project, name="Gone")
    ApiKey.objects.filter(pk=revoked.pk).update(revoked_at=now)
    page = html(logged_in(owner).get(api_url(project)))

    def row(key):
        return re.search(rf'<tr[^>]*data-key-id="{key.id}".*?</tr>', page, re.S).group(0)

    assert f'<code class="prefix">{used.prefix}…</code>' in row(used)
    assert "3 minutes ago" in row(used)
    assert breakable_email(owner.email) in row(used)  # "by <email>", breakable before its @
    assert "<code>config:write</code>" in row(used)
    assert "Active" in row(used)
    assert "Never" in row(expiring)  # never used
    assert "—" in row(expiring)  # created by no one (factory without actor)
    assert "Expiring" in row(expiring)
    assert "Expiring" not in row(later)
    assert "Revoked" in row(revoked)


def test_a_revoked_keys_row_says_when_it_was_revoked(owner, project):
    """Its badge said Revoked, and only its own page said when (SPEC §2.1: the row stays,
    with revokedAt, for audit)."""
    revoked, _ = make_key(KeyKind.SECRET, project=project, name="Gone")
    moment = timezone.now() - timedelta(days=3, hours=2)
    ApiKey.objects.filter(pk=revoked.pk).update(revoked_at=moment)
    page = html(logged_in(owner).get(api_url(project)))

    row = re.search(rf'<tr[^>]*data-key-id="{revoked.id}".*?</tr>', page, re.S).group(0)
    assert re.search(
        rf'Revoked <time datetime="{re.escape(iso(moment, timespec="milliseconds"))}"'
        rf' title="{re.escape(utc_text(moment))}">3 days ago',
        row,
    )


def test_org_keys_show_their_last_used_project(owner, project):
    org_key, _ = make_key(KeyKind.ORGANIZATION, organization=project.organization)
    ApiKey.objects.filter(pk=org_key.pk).update(
        last_used_at=timezone.now() - timedelta(hours=2), last_used_project=project
    )
    page = html(logged_in(owner).get(org_url(project.organization)))
    assert "2 hours ago" in page
    assert f"in {project.name}" in page


def test_key_list_query_count_does_not_grow_with_the_number_of_keys(owner, admin, project):
    client = logged_in(owner)
    url = api_url(project)
    make_legacy_key(project, last_used_at=timezone.now())

    def queries_for_page() -> int:
        client.get(url)  # warm up (session, first-time lookups)
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
        return len(captured)

    bulk_secret_keys(project, 5, actor=admin)
    few = queries_for_page()
    ApiKey.objects.filter(project=project, legacy=False).delete()
    keys = bulk_secret_keys(project, 200, actor=admin)
    ApiKey.objects.filter(pk__in=[k.pk for k in keys[:50]]).update(replaces=keys[-1])
    many = queries_for_page()
    assert many == few


def test_key_list_is_paginated(owner, project):
    bulk_secret_keys(project, 55)
    client = logged_in(owner)
    first = html(client.get(api_url(project)))
    assert first.count('class="key-row') == 50
    assert "Page 1 of 2" in first
    second = html(client.get(api_url(project) + "?page=2"))
    assert second.count('class="key-row') == 5


# Legacy banner ------------------------------------------------------------------------


@pytest.mark.usefixtures("before_the_sunset")
def test_legacy_banner_on_project_api_keys_counts_keys_and_names_the_sunset(owner, project):
    make_legacy_key(project, name="Recent", last_used_at=timezone.now() - timedelta(minutes=10))
    make_legacy_key(project, name="Dormant")
    client = logged_in(owner)
    page = html(client.get(api_url(project)))
    banner = re.search(r"<section[^>]*data-legacy-banner.*?</section>", page, re.S).group(0)
    # The moment, not a day: 25 May 17:00 in California (a time audit)
    assert "2 legacy keys stop working on 26 May 2027, 00:00 UTC" in banner
    # and their rows, which said "Expires: Never"
    assert page.count("26 May 2027, 00:00 UTC</span>") == 2
    assert page.count("when legacy keys stop working") == 2
    assert "Recent" in banner and "10 minutes ago" in banner
    assert "Dormant" not in banner
    assert "data-legacy-banner" not in html(client.get(sdk_url(project)))


@pytest.mark.usefixtures("before_the_sunset")
def test_legacy_banner_on_org_api_keys_covers_every_project(owner, project, other_project):
    make_legacy_key(project)
    make_legacy_key(other_project, name="Billing legacy", last_used_at=timezone.now())
    page = html(logged_in(owner).get(org_url(project.organization)))
    assert "2 legacy keys stop working on 26 May 2027" in page
    assert f'href="/projects/{other_project.id}/api-keys/"' in page


@pytest.mark.usefixtures("before_the_sunset")
def test_names_inside_the_banners_sentences_are_isolated(owner, project, other_project):
    """A name sits inside a sentence ("<prefix>… <name> in <project> — last used …"): drawn
    in a <bdi>, a right-to-left name, or one stored before the name rules with an unclosed
    override, cannot reorder the rest of the line."""
    make_legacy_key(other_project, name="Billing ‮legacy", last_used_at=timezone.now())
    Project.objects.filter(pk=other_project.pk).update(name="متجر 2")

    page = html(logged_in(owner).get(org_url(project.organization)))

    assert "<bdi>Billing ‮legacy</bdi> in " in page
    assert "<bdi>متجر 2</bdi></a> — last used" in page
    assert "The projects of <bdi>Acme</bdi> still hold" in page


def test_names_in_the_key_dialogs_and_policy_list_are_isolated(owner, project):
    api_key, _ = make_key(KeyKind.SECRET, project=project, name="شحن", actor=owner)
    ApiKey.objects.filter(pk=api_key.pk).update(name="شحن‮")  # stored before the rules
    client = logged_in(owner)

    keys = html(client.get(api_url(project)))
    minted = html(mint(client, api_url(project), name="ci \u05d1"))
    Organization.objects.filter(pk=project.organization_id).update(key_max_lifetime_days=30)
    policy = html(client.get(org_url(project.organization)))

    assert "Roll “<bdi>شحن‮</bdi>”</h2>" in keys
    assert "Limits of “<bdi>شحن‮</bdi>”</h2>" in keys
    assert 'data-confirm="Revoke “&#x2068;شحن\u202e&#x2069;” (' in keys
    assert "“<bdi>ci \u05d1</bdi>” ·" in minted
    assert f"<code>{api_key.prefix}…</code> <bdi>شحن‮</bdi> — in <a" in policy


def test_no_banner_once_legacy_keys_are_revoked(owner, project):
    legacy, _ = make_legacy_key(project)
    ApiKey.objects.filter(pk=legacy.pk).update(revoked_at=timezone.now())
    assert "data-legacy-banner" not in html(logged_in(owner).get(api_url(project)))


@pytest.mark.usefixtures("before_the_sunset")  # legacy keys work on any day
def test_legacy_rows_show_the_legacy_badge_and_replace(owner, project):
    legacy, _ = make_legacy_key(project)
    page = html(logged_in(owner).get(api_url(project)))
    assert "badge-legacy" in page
    assert f"{api_url(project)}{legacy.id}/replace/" in page


# CSRF -------------------------------------------------------------------------------


def test_key_forms_need_the_csrf_token(owner, project):
    api_key, _ = make_key(KeyKind.SECRET, project=project)
    client = logged_in(owner, Client(enforce_csrf_checks=True))
    page = html(client.get(api_url(project)))
    assert "csrfmiddlewaretoken" in page
    nonce = NONCE.search(page).group(1)
    mint_response = client.post(
        api_url(project), {"name": "x", "permissions": ["analysis:read"], "nonce": nonce}
    )
    assert mint_response.status_code == 403
    assert client.post(f"{api_url(project)}{api_key.id}/revoke/", CONFIRMED).status_code == 403
    assert ApiKey.objects.count() == 1
    api_key.refresh_from_db()
    assert api_key.revoked_at is None


def test_expiry_input_is_labelled_as_utc(owner, project):
    page = html(logged_in(owner).get(api_url(project)))
    assert re.search(r"<label[^>]*>Expires \(UTC\)", page)
    assert 'type="datetime-local"' in page


def test_minting_with_a_hung_redis_waits_for_it_once_and_mints_once(owner, project):
    """The form's nonce and the mint throttle are two Redis steps: once one has waited its
    250 ms, the other goes on without (`core.failopen`); the key is minted and shown once."""
    client, url = logged_in(owner), api_url(project)
    nonce = nonce_of(client, url)
    with hung_redis() as (redis_down, tried), override_settings(**redis_down):
        response = mint(client, url, nonce=nonce)
        assert len(tried) == 1

    minted_key_of(response)
    assert ApiKey.objects.filter(name="CI deploys").count() == 1


# Errors tied to their fields -----------------------------------------------------------


class Elements(HTMLParser):
    """Every element of a page: (tag, attributes), in document order."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.all: list[tuple[str, dict]] = []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.all.append((tag, dict(attrs)))

    def by_id(self, element_id: str) -> tuple[str, dict]:
        [element] = [(tag, a) for tag, a in self.all if a.get("id") == element_id]
        return element

    def described_by(self, element_id: str) -> list[str]:
        """The ids named by an element's aria-describedby; each must name one element."""
        ids = self.by_id(element_id)[1].get("aria-describedby", "").split()
        for described in ids:
            self.by_id(described)
        return ids


def test_each_create_form_error_is_tied_to_its_input_and_the_first_takes_the_focus(owner, project):
    response = mint(
        logged_in(owner),
        org_url(project.organization),
        name="",
        permissions=[],
        rate_limit_requests="0",
        rate_limit_seconds="60",
        allowed_ips="floor 3",
    )

    page = html(response)
    elements = Elements(page)
    assert response.status_code == 200 and not ApiKey.objects.exists()
    ids = [a["id"] for _tag, a in elements.all if "id" in a]
    assert len(ids) == len(set(ids)), "an id is used twice"
    assert "id_name_error" in elements.described_by("id_name")
    permissions = next(
        a for tag, a in elements.all if tag == "fieldset" and "permissions" in a["class"]
    )
    assert permissions["aria-invalid"] == "true"
    assert permissions["aria-describedby"] == "id_permissions_error"
    for rate_input in ("id_rate_limit_requests", "id_rate_limit_seconds"):
        assert elements.described_by(rate_input) == ["id_rate_limit_requests_error"]
    assert re.search(
        r'id="id_rate_limit_requests_error">The number of requests must be at least 1\.<', page
    )
    assert elements.described_by("id_allowed_ips") == [  # two bad lines, two errors
        "id_allowed_ips_help",
        "id_allowed_ips_error",
        "id_allowed_ips_error_2",
    ]
    focused = [a.get("id") for _tag, a in elements.all if "autofocus" in a]
    assert focused == ["id_name"], "after a failed submit the first invalid field has the focus"


def test_a_name_with_a_text_direction_character_is_refused_next_to_the_field(owner, project):
    response = mint(logged_in(owner), api_url(project), name="CI\u202eprod")

    page = html(response)
    assert response.status_code == 200 and not ApiKey.objects.exists()
    assert "id_name_error" in Elements(page).described_by("id_name")
    assert re.search(
        r'id="id_name_error">Names cannot contain control, invisible or text-direction'
        r" characters\.<",
        page,
    )


def test_a_text_direction_name_is_shown_with_the_forms_other_errors(owner, project):
    """Seen in Chromium: with no permission ticked, only "Choose at least one permission"
    showed, and the name field drew the spoof ("deploy\u202egnp.exe" reads "deployexe.png")."""
    page = html(
        mint(logged_in(owner), api_url(project), name="deploy\u202egnp.exe", permissions=[])
    )

    assert re.search(r'id="id_name_error">Names cannot contain control', page)
    assert "Choose at least one permission." in page
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize("name", ["\u2800", "\u200d", "\u0301"])
def test_a_name_that_shows_nothing_is_shown_with_the_forms_other_errors(owner, project, name):
    """A braille blank, a lone joiner or a lone mark is no name (`core.validation.clean_name`);
    the form says so with its other errors, not only once they are mended (seen in
    Chromium: only "Choose at least one permission" showed)."""
    page = html(mint(logged_in(owner), api_url(project), name=name, permissions=[]))

    assert re.search(r'id="id_name_error">A name is required\.<', page)
    assert "Choose at least one permission." in page
    assert not ApiKey.objects.exists()


def test_the_focus_goes_to_the_first_invalid_field_in_page_order(owner, project):
    page = html(mint(logged_in(owner), api_url(project), permissions=[], allowed_ips="floor"))

    focused = [a.get("id") for _tag, a in Elements(page).all if "autofocus" in a]

    assert focused == ["perm-1"]  # the permissions come before the allowed IPs


def test_a_field_with_two_errors_gives_each_its_own_id():
    form = KeyCreateForm({"name": ""}, kind=KeyKind.SECRET)
    form.is_valid()
    form.add_error("name", "A second problem.")

    rendered = render_to_string("includes/field.html", {"field": form["name"]})

    elements = Elements(rendered)
    assert elements.described_by("id_name") == ["id_name_error", "id_name_error_2"]
    assert 'id="id_name_error_2">A second problem.<' in rendered


def test_a_time_less_than_a_minute_ahead_is_not_just_now():
    """A time audit: a key expiring in 30 seconds read "Expiring just now"."""
    now = timezone.now()
    assert relative(now + timedelta(seconds=30)) == "in less than a minute"
    assert relative(now - timedelta(seconds=30)) == "just now"
    assert relative(now + timedelta(minutes=5, seconds=30)) == "in 5 minutes"


def test_a_time_ahead_is_not_cut_down_to_its_first_unit():
    """A UX review: an invitation "valid for 7 days" read "Expires in 6 days" at once."""
    now = timezone.now()
    assert relative(now + timedelta(days=7, seconds=-5)) == "in 6 days, 23 hours"
    assert relative(now + timedelta(days=7, minutes=5)) == "in 1 week"
    assert relative(now - timedelta(days=6, hours=23)) == "6 days ago"


def test_exact_times_are_text_for_screen_readers_too(owner, project):
    """An accessibility audit: a row's exact creation and last-use times were only in a
    tooltip (`title`), which keyboards, touch screens and screen readers do not reach."""
    api_key, _ = make_key(KeyKind.SECRET, project=project)

    page = html(logged_in(owner).get(f"/projects/{project.id}/api-keys/"))

    exact = utc_text(api_key.created_at)
    assert f'title="{exact}">just now<span class="visually-hidden"> ({exact})</span></time>' in page
    # a valid HTML date-time: three fractional digits at most (the API's iso writes six)
    machine = re.search(r'<time datetime="([^"]+)"', page).group(1)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", machine), machine


def test_a_form_drawn_for_another_account_than_the_one_logged_in_now_does_nothing(
    owner, admin, project
):
    """Found by a multi-tab audit: a page drawn for one account, another logged in in the
    same browser (another window), and the page's Revoke revoked as the other account. The
    page's script sends which account it was drawn for (`opened_as`)."""
    api_key, _ = make_key(KeyKind.SECRET, project=project)
    url = f"{api_url(project)}{api_key.id}/revoke/"
    page = html(logged_in(owner).get(api_url(project)))
    assert f'data-account="{owner.pk}"' in page
    now_admin = logged_in(admin)  # the browser's cookies after the other window's log-in

    refused = now_admin.post(url, {"opened_as": str(owner.pk), **CONFIRMED})

    assert refused.status_code == 409
    assert "This browser is logged in as someone else now" in html(refused)
    assert f"carry on as {admin.email}" in html(refused)
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at is None
    assert now_admin.post(url, {"opened_as": str(admin.pk), **CONFIRMED}).status_code == 302
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at is not None


@pytest.mark.parametrize(
    ("kind", "heading"),
    [
        (KeyKind.PUBLIC, "Create SDK key"),
        (KeyKind.SECRET, "Create API key"),
        (KeyKind.ORGANIZATION, "Create organization key"),
    ],
)
def test_each_create_form_is_headed_in_the_pages_words(owner, project, kind, heading):
    """A UX review: "Create Organization key", a capital the other pages do not write."""
    url = {KeyKind.PUBLIC: sdk_url(project), KeyKind.SECRET: api_url(project)}.get(
        kind, org_url(project.organization)
    )
    assert f'<h2 id="create-heading">{heading}</h2>' in html(logged_in(owner).get(url))
