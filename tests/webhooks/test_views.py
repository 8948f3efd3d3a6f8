"""Organization → Webhooks page: owners and admins; outsiders 404; the secret shown once."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.apikeys.keyformat import KeyKind
from apps.webhooks import urlsafety
from apps.webhooks.models import Delivery, Webhook
from tests.factories import make_key
from tests.orgs.helpers import user_client
from tests.pages import CONFIRMED, assert_no_inline_code, html, logged_in

pytestmark = pytest.mark.django_db

PUBLIC_URL = "https://8.8.8.8/hooks/sigsentry"


def page_url(organization) -> str:
    return f"/orgs/{organization.id}/webhooks/"


def nonce_of(page: str) -> str:
    return re.search(r'name="nonce" value="([^"]+)"', page).group(1)


def add(client, organization, url=PUBLIC_URL, events=("key.minted", "key.revoked")):
    nonce = nonce_of(html(client.get(page_url(organization))))
    return client.post(page_url(organization), {"url": url, "events": list(events), "nonce": nonce})


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_managers_add_a_webhook_and_see_its_secret_once(request, role, organization):
    client = logged_in(request.getfixturevalue(role))

    response = add(client, organization)

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    page = html(response)
    [secret] = re.findall(r"whsec_[0-9A-Za-z]{32}", page)
    assert "This secret will not be shown again" in page
    assert_no_inline_code(page)
    webhook = Webhook.objects.get()
    assert webhook.events == ["key.minted", "key.revoked"]
    assert secret not in html(client.get(page_url(organization)))
    # a URL may hold the receiver's token: not kept in the browser's form history
    # (found by a browser-history audit)
    assert re.search(r'<input type="url" name="url"[^>]* autocomplete="off"', page)


def test_the_secret_and_the_remove_button_name_the_whole_url(owner, organization):
    """Found by a UX review: two webhooks on one host read the same ("For 8.8.8.8") where
    the secret is shown once. The page shows its managers each URL anyway; logs, audit
    events and the messages kept in a cookie name the host alone."""
    client = logged_in(owner)
    add(client, organization, url="https://8.8.8.8/hooks/a")

    page = html(add(client, organization, url="https://8.8.8.8/hooks/b"))

    assert (
        '<p class="secret-meta">For <code class="webhook-url">https://8.8.8.8/hooks/b</code>'
        in page
    )
    assert 'aria-label="Remove the webhook to https://8.8.8.8/hooks/a"' in page
    assert 'aria-label="Remove the webhook to https://8.8.8.8/hooks/b"' in page


def test_a_resubmitted_form_creates_nothing_new(owner, organization):
    client = logged_in(owner)
    nonce = nonce_of(html(client.get(page_url(organization))))
    form = {"url": PUBLIC_URL, "events": ["key.minted"], "nonce": nonce}

    first = client.post(page_url(organization), form)
    again = client.post(page_url(organization), form)

    assert first.status_code == 200
    assert again.status_code == 302
    assert Webhook.objects.count() == 1


def test_an_unsafe_url_is_refused_with_the_reason(owner, organization, settings):
    settings.WEBHOOKS_ALLOW_PRIVATE = False

    response = add(logged_in(owner), organization, url="https://169.254.169.254/latest")

    assert response.status_code == 200
    assert "public address" in html(response)
    assert not Webhook.objects.exists()


def test_a_throttled_creation_says_so_on_the_form(owner, organization, settings):
    settings.THROTTLE_RATES = settings.THROTTLE_RATES | {"webhook_create_user": (1, 3600)}
    client = logged_in(owner)
    add(client, organization)

    response = add(client, organization, url="https://8.8.4.4/hooks")

    assert response.status_code == 200
    assert "Too many requests" in html(response)
    assert 'value="https://8.8.4.4/hooks"' in html(response)
    assert Webhook.objects.count() == 1


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_members_and_viewers_get_403(request, role, organization):
    response = logged_in(request.getfixturevalue(role)).get(page_url(organization))

    assert response.status_code == 403


def test_outsiders_get_404_for_the_page_and_its_actions(outsider, owner, organization):
    add(logged_in(owner), organization)
    webhook = Webhook.objects.get()
    client = logged_in(outsider)

    assert client.get(page_url(organization)).status_code == 404
    assert (
        client.post(f"{page_url(organization)}{webhook.id}/delete/", CONFIRMED).status_code == 404
    )
    assert client.post(f"{page_url(organization)}{webhook.id}/enable/").status_code == 404
    theirs = outsider.memberships.get().organization
    assert client.post(f"{page_url(theirs)}{webhook.id}/delete/", CONFIRMED).status_code == 404
    assert Webhook.objects.count() == 1


def test_remove_and_enable_need_the_csrf_token(owner, organization):
    add(logged_in(owner), organization)
    webhook = Webhook.objects.get()
    client = logged_in(owner, Client(enforce_csrf_checks=True))

    assert (
        client.post(f"{page_url(organization)}{webhook.id}/delete/", CONFIRMED).status_code == 403
    )
    assert Webhook.objects.count() == 1


def test_recent_deliveries_and_re_enable(owner, organization, project, settings):
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    client = logged_in(owner)
    add(client, organization, url="http://127.0.0.1:9/hook")
    make_key(KeyKind.SECRET, project=project)
    Delivery.objects.update(attempts=3, last_status_code=500)
    Webhook.objects.update(disabled_at=timezone.now(), consecutive_failures=100)

    page = html(client.get(page_url(organization)))
    assert "key.minted" in page and "HTTP 500" in page and "Disabled" in page
    assert "Enable again" in page

    response = client.post(f"{page_url(organization)}{Webhook.objects.get().id}/enable/")
    assert response.status_code == 302
    assert Webhook.objects.get().is_enabled
    response = client.post(f"{page_url(organization)}{Webhook.objects.get().id}/delete/", CONFIRMED)
    assert response.status_code == 302
    assert not Webhook.objects.exists()


def test_a_retry_whose_time_has_come_is_due_now_not_next_in_the_past(
    owner, organization, project, settings
):
    """A worker behind or stopped leaves a retry's time behind: "next 3 minutes ago"."""
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    client = logged_in(owner)
    add(client, organization, url="http://127.0.0.1:9/hook")
    make_key(KeyKind.SECRET, project=project, name="first")
    make_key(KeyKind.SECRET, project=project, name="second")
    due, later = Delivery.objects.order_by("created_at", "id")
    now = timezone.now()
    Delivery.objects.filter(pk=due.pk).update(
        attempts=2, next_attempt_at=now - timedelta(minutes=3)
    )
    Delivery.objects.filter(pk=later.pk).update(
        attempts=1, next_attempt_at=now + timedelta(hours=2)
    )

    page = html(client.get(page_url(organization)))

    assert "next try due now" in page
    assert "ago" not in re.sub(r"<time.*?</time>", "", page)
    assert "next in 1 hour" in page


def test_the_organization_menu_links_the_page_for_managers_only(owner, member, organization):
    link = f'href="{page_url(organization)}"'
    assert link in html(logged_in(owner).get(f"/orgs/{organization.id}/members/"))
    assert link not in html(logged_in(member).get(f"/orgs/{organization.id}/members/"))


def test_the_page_lists_each_webhooks_newest_deliveries(
    make_webhook, receiver, owner, organization, project
):
    """The page shows the most recent deliveries, never the first ones forever."""
    make_webhook(receiver.url, events=["key.minted"])
    for number in range(15):
        make_key(KeyKind.SECRET, project=project, name=f"key {number}")
    newest_first = Delivery.objects.order_by("-created_at", "-id")

    page = html(logged_in(owner).get(page_url(organization)))

    assert str(newest_first.first().event_id) in page
    assert str(newest_first.last().event_id) not in page


def test_the_page_reads_every_webhooks_deliveries_in_one_query(
    make_webhook, owner, organization, project
):
    """Found by the DoS audit: two queries more per webhook (its deliveries, its creator)."""
    client = logged_in(owner)
    client.get(page_url(organization))  # the session's first-request writes
    counts = []
    for hooks in (1, 4):
        while Webhook.objects.count() < hooks:
            make_webhook(f"https://8.8.8.{Webhook.objects.count() + 1}/hook", actor=owner)
        for number in range(12):  # more than the page shows, for every webhook
            make_key(KeyKind.SECRET, project=project, name=f"key {hooks}-{number}")
        with CaptureQueriesContext(connection) as queries:
            page = html(client.get(page_url(organization)))
        counts.append(len(queries))
        for hook in Webhook.objects.all():
            shown = Delivery.objects.filter(webhook=hook).order_by("-created_at", "-id")
            assert str(shown[0].event_id) in page and str(shown[9].event_id) in page
            assert str(shown[10].event_id) not in page

    assert counts[0] == counts[1], counts


def test_a_refused_webhook_answers_200_with_each_error_tied_to_its_field(owner, organization):
    """A form re-drawn with its errors is a page like any other (no 400 in the console)."""
    client = logged_in(owner)

    no_events = add(client, organization, events=())
    bad_url = add(client, organization, url="http://example.com/hook")

    assert no_events.status_code == 200 and bad_url.status_code == 200
    assert not Webhook.objects.exists()
    page = html(no_events)
    events = re.search(r"<fieldset[^>]*>\s*<legend>Events</legend>", page).group(0)
    assert 'aria-invalid="true"' in events and 'aria-describedby="events-error"' in events
    assert re.search(r'<p class="field-error" id="events-error">[^<]+</p>', page)
    assert re.search(r'<input type="checkbox" name="events"[^>]*autofocus', page)
    page = html(bad_url)
    url_input = re.search(r'<input type="url"[^>]*>', page).group(0)
    assert 'aria-describedby="webhook-url-help webhook-url-error"' in url_input
    assert 'aria-invalid="true"' in url_input and "autofocus" in url_input
    assert re.search(r'<p class="field-error" id="webhook-url-error">[^<]+</p>', page)


@pytest.mark.parametrize("allowed", [False, True])
def test_the_form_says_which_urls_this_server_takes(owner, organization, settings, allowed):
    """`make run` allows http:// and private addresses for a local receiver: the form says
    so there, and the production rule everywhere else."""
    settings.WEBHOOKS_ALLOW_PRIVATE = allowed

    page = html(logged_in(owner).get(page_url(organization)))

    assert ("WEBHOOKS_ALLOW_PRIVATE" in page) is allowed
    assert "must be <code>https://</code> and reach a public address" in page


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("via", ["api", "page"])
def test_the_urls_host_is_looked_up_outside_any_transaction(via, owner, organization, monkeypatch):
    """The lookup waits up to 5 s: inside the manager's transaction it held the caller's
    role locks (a demotion waited) and, on SQLite, every other write of the demo."""
    looked_up_in_a_transaction = []
    lookup = urlsafety._lookup

    def watched(host, port):
        looked_up_in_a_transaction.append(connection.in_atomic_block)
        return lookup(host, port)

    monkeypatch.setattr(urlsafety, "_lookup", watched)

    if via == "api":
        answer = user_client(owner).post(
            f"/v1/organizations/{organization.id}/webhooks",
            {"url": PUBLIC_URL, "events": ["key.minted"]},
            format="json",
        )
        assert answer.status_code == 201
    else:
        assert add(logged_in(owner), organization).status_code == 200

    assert looked_up_in_a_transaction == [False]
    assert Webhook.objects.filter(organization=organization).count() == 1


def test_deliveries_made_at_one_instant_are_read_ten_not_all(
    make_webhook, organization, monkeypatch
):
    """A review: a fan-out stamps its deliveries with one instant, and reading every
    delivery at the tenth's instant read a leak report's thousand to show ten."""
    from apps.webhooks.models import Event
    from apps.webhooks.selectors import recent_deliveries_of

    webhook = make_webhook("https://8.8.8.8/hook").webhook
    moment = timezone.now()
    events = Event.objects.bulk_create(
        Event(organization=organization, type="key.minted", data={}, created_at=moment)
        for _ in range(40)
    )
    Delivery.objects.bulk_create(
        Delivery(event=event, webhook=webhook, created_at=moment) for event in events
    )
    newest = list(Delivery.objects.filter(webhook=webhook).order_by("-created_at", "-id")[:10])
    built = []
    original = Delivery.from_db.__func__

    def counting(cls, db, field_names, values):
        built.append(values)
        return original(cls, db, field_names, values)

    monkeypatch.setattr(Delivery, "from_db", classmethod(counting))

    shown = recent_deliveries_of([webhook], 10)[webhook.pk]

    assert [d.pk for d in shown] == [d.pk for d in newest]
    assert len(built) == 10
