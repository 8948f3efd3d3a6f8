"""Usage on the key pages (SPEC §4.9): row charts, last client, the unused filter, a key's page."""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.accounts.templatetags.dashboard import utc
from apps.apikeys import charts
from apps.apikeys.gate.counters import bucket_start
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey, Granularity, KeyUsage
from apps.apikeys.services import revoke_key
from tests.factories import ProjectFactory, make_key, make_legacy_key
from tests.orgs.helpers import bearer_client
from tests.pages import assert_no_inline_code, html, logged_in

pytestmark = pytest.mark.django_db

KINDS = list(KeyKind)
KIND_IDS = [kind.name.lower() for kind in KINDS]


def page_url(kind: KeyKind, project) -> str:
    if kind is KeyKind.ORGANIZATION:
        return f"/orgs/{project.organization_id}/api-keys/"
    return f"/projects/{project.id}/{'sdk-keys' if kind is KeyKind.PUBLIC else 'api-keys'}/"


def detail_url(kind: KeyKind, project, api_key) -> str:
    return f"{page_url(kind, project)}{api_key.id}/"


def use(kind: KeyKind, project, plaintext: str, **headers) -> int:
    if kind is KeyKind.ORGANIZATION:
        headers["HTTP_X_PROJECT_ID"] = str(project.id)
    return bearer_client(plaintext).get("/v1/me", **headers).status_code


def rows(page: str) -> dict[str, str]:
    """Each key row's HTML by key id."""
    found = re.findall(r'<tr class="key-row[^"]*" data-key-id="([^"]+)".*?</tr>', page, re.S)
    blocks = re.findall(r'(<tr class="key-row.*?</tr>)', page, re.S)
    return dict(zip(found, blocks, strict=True))


# The list: a chart and the last client per row


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_each_row_shows_30_days_of_requests_and_links_to_the_keys_page(member, project, kind):
    api_key, plaintext = make_key(kind, project=project, name="Busy key")
    for _ in range(3):
        assert use(kind, project, plaintext) == 200
    idle, _ = make_key(kind, project=project, name="Idle key")

    page = html(logged_in(member).get(page_url(kind, project)))

    assert_no_inline_code(page)
    busy_row, idle_row = rows(page)[str(api_key.id)], rows(page)[str(idle.id)]
    assert busy_row.count('<g class="spark-column') == 30
    assert re.search(
        r'<svg class="spark"[^>]*role="img"[^>]*aria-label="Requests per day', busy_row
    )
    assert "3 requests" in busy_row  # today's tooltip
    assert '<span class="usage-number">3</span> in 30 days' in busy_row
    assert f'href="{detail_url(kind, project, api_key)}"' in busy_row
    assert "No requests in 30 days" in idle_row
    assert 'class="spark-bar"' not in idle_row
    assert '<g class="spark-column' not in idle_row  # no 30 "0 requests" tooltips


def test_a_row_shows_refusals_apart(member, project, owner):
    api_key, plaintext = make_key(KeyKind.SECRET, project=project, permissions=["analysis:read"])
    use(KeyKind.SECRET, project, plaintext)
    bearer_client(plaintext).post("/v1/analyses", {"title": "t", "input": "i"}, format="json")

    row = rows(html(logged_in(member).get(page_url(KeyKind.SECRET, project))))[str(api_key.id)]

    assert '<span class="usage-refused">1 refused</span>' in row
    assert 'class="spark-refused"' in row


def test_a_row_shows_the_last_ip_and_user_agent_escaped(member, project):
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)
    agent = '<script>alert("ua")</script> curl/8.5'
    use(KeyKind.SECRET, project, plaintext, HTTP_USER_AGENT=agent, REMOTE_ADDR="192.0.2.77")

    page = html(logged_in(member).get(page_url(KeyKind.SECRET, project)))

    row = rows(page)[str(api_key.id)]
    assert '<code class="last-ip">192.0.2.77</code>' in row
    assert "&lt;script&gt;alert(&quot;ua&quot;)&lt;/script&gt; curl/8.5" in row
    assert '<script>alert("ua")' not in page
    assert_no_inline_code(page)


def test_row_charts_cost_the_same_queries_whatever_the_number_of_keys(owner, project):
    client = logged_in(owner)
    url = page_url(KeyKind.SECRET, project)

    def queries() -> int:
        client.get(url)
        with CaptureQueriesContext(connection) as captured:
            client.get(url)
        return len(captured)

    make_key(KeyKind.SECRET, project=project)
    few = queries()
    for _ in range(12):
        make_key(KeyKind.SECRET, project=project)
    assert queries() == few


# The unused filter


@pytest.fixture
def aged_keys(owner, project):
    """Keys of Project → API Keys in every situation the filter must tell apart."""
    now = timezone.now()

    def key(name, *, age_days, used_days_ago=None, **fields):
        api_key, _ = make_key(KeyKind.SECRET, project=project, name=name)
        ApiKey.objects.filter(id=api_key.id).update(
            created_at=now - timedelta(days=age_days),
            last_used_at=None if used_days_ago is None else now - timedelta(days=used_days_ago),
            **fields,
        )
        return api_key

    keys = {
        "never used, old": key("Never used, old", age_days=200),
        "never used, new": key("Never used, new", age_days=5),
        "used 45 days ago": key("Used 45 days ago", age_days=200, used_days_ago=45),
        "used 100 days ago": key("Used 100 days ago", age_days=200, used_days_ago=100),
        "used yesterday": key("Used yesterday", age_days=200, used_days_ago=1),
        "expired": key(
            "Expired", age_days=200, used_days_ago=100, expires_at=now - timedelta(days=1)
        ),
        "revoked": key("Revoked", age_days=200, used_days_ago=100),
    }
    revoke_key(actor=owner, api_key=keys["revoked"])
    return keys


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?unused=30", {"never used, old", "used 45 days ago", "used 100 days ago"}),
        ("?unused=90", {"never used, old", "used 100 days ago"}),
        ("", None),
        ("?unused=7", None),
        ("?unused=abc", None),
    ],
)
def test_the_unused_filter_lists_only_active_keys_unused_that_long(
    viewer, project, aged_keys, query, expected
):
    page = html(logged_in(viewer).get(page_url(KeyKind.SECRET, project) + query))

    listed = {name for name, api_key in aged_keys.items() if str(api_key.id) in rows(page)}
    assert listed == (expected if expected is not None else set(aged_keys))
    selected = re.findall(r'<a class="segment" href="([^"]*)" aria-current="page">', page)
    assert selected == [page_url(KeyKind.SECRET, project) + (query if expected else "") + "#keys"]


def test_the_unused_filter_says_when_nothing_is_unused(member, project):
    make_key(KeyKind.SECRET, project=project)

    page = html(logged_in(member).get(page_url(KeyKind.SECRET, project) + "?unused=90"))

    assert "No key unused for 90 days" in page


def test_pages_of_a_filtered_list_keep_the_filter(owner, project):
    old = timezone.now() - timedelta(days=120)
    for _ in range(51):
        api_key, _ = make_key(KeyKind.SECRET, project=project)
        ApiKey.objects.filter(id=api_key.id).update(created_at=old)

    page = html(logged_in(owner).get(page_url(KeyKind.SECRET, project) + "?unused=30"))

    assert 'href="?unused=30&amp;page=2#keys"' in page


# A key's usage page


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("role", ["owner", "admin", "member", "viewer"])
def test_any_member_opens_a_keys_usage_page(request, project, kind, role, settings):
    settings.NUM_PROXIES = 1
    api_key, plaintext = make_key(kind, project=project, name="Nightly export")
    use(kind, project, plaintext, HTTP_X_FORWARDED_FOR="6.6.6.6, 198.51.100.4")

    response = logged_in(request.getfixturevalue(role)).get(detail_url(kind, project, api_key))

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    page = html(response)
    assert_no_inline_code(page)
    assert "<h1>Nightly export</h1>" in page
    for chart in ("hourly", "daily"):
        for variant in ("wide", "narrow"):
            assert f'aria-labelledby="{chart}-{variant}-title"' in page
    # The summary is the visible caption, once per chart: not also each drawing's <desc>,
    # which a screen reader reads after the name (an accessibility audit heard it twice).
    assert "<desc" not in page
    assert page.count('<figcaption class="chart-caption">') == 2
    assert page.count('<g class="chart-column') == 2 * (48 + 90)
    assert "198.51.100.4" in page
    assert "6.6.6.6" not in page


def limits_card(page: str) -> str:
    return re.search(r'<section class="card usage-limits".*?</section>', page, re.S)[0]


def test_a_viewer_reads_every_limit_of_a_key_on_its_page(viewer, project, other_project):
    """Found by an accessibility audit: a row shows a key's first IP and project with "+n",
    the rest only in a mouse tooltip, and a viewer has no Edit limits to read them in."""
    ips = ["198.51.100.23/32", "203.0.113.0/24", "10.0.0.0/8"]
    secret, _ = make_key(KeyKind.SECRET, project=project, allowed_ips=ips)
    confined, _ = make_key(
        KeyKind.ORGANIZATION,
        project=project,
        project_ids=[str(project.id), str(other_project.id)],
        rate_limit={"requests": 5, "perSeconds": 60},
    )
    client = logged_in(viewer)

    secret_page = html(client.get(detail_url(KeyKind.SECRET, project, secret)))
    org_page = html(client.get(detail_url(KeyKind.ORGANIZATION, project, confined)))

    secret_limits, org_limits = limits_card(secret_page), limits_card(org_page)
    assert all(f"<code>{network}</code>" in secret_limits for network in ips)
    assert "<dt>Projects</dt>" not in secret_limits
    # The names themselves (the sidebar names every project too): none read as deleted.
    assert f"<dd>{project.name}, {other_project.name}</dd>" in org_limits
    assert "a deleted project" not in org_limits
    assert "5 / minute" in org_limits


def test_a_keys_page_names_its_permissions_and_expiry(viewer, project, settings):
    """Found by a UX review: the card said "besides its permissions" and named none."""
    expires_at = timezone.now() + timedelta(days=30)
    expiring, _ = make_key(
        KeyKind.SECRET, project=project, permissions=["analysis:read"], expires_at=expires_at
    )
    forever, _ = make_key(KeyKind.ORGANIZATION, project=project)
    legacy, _ = make_legacy_key(project=project)
    client = logged_in(viewer)

    pages = {
        key: limits_card(html(client.get(detail_url(kind, project, key))))
        for key, kind in (
            (expiring, KeyKind.SECRET),
            (forever, KeyKind.ORGANIZATION),
            (legacy, KeyKind.SECRET),
        )
    }

    assert "<li><code>analysis:read</code></li>" in pages[expiring]
    assert "<code>config:write</code>" not in pages[expiring]
    assert f"<dt>Expires</dt><dd>{utc(expires_at)}</dd>" in pages[expiring]
    assert all(f"<code>{p}</code>" in pages[forever] for p in forever.permissions)
    assert '<dt>Expires</dt><dd><span class="muted">Never</span></dd>' in pages[forever]
    assert f"{utc(settings.LEGACY_KEYS_SUNSET_AT)}, when legacy keys stop" in pages[legacy]


def test_the_usage_page_draws_refusals_in_their_own_bars(member, project, owner):
    api_key, plaintext = make_key(KeyKind.SECRET, project=project, permissions=["analysis:read"])
    use(KeyKind.SECRET, project, plaintext)
    for _ in range(2):
        bearer_client(plaintext).post("/v1/analyses", {"title": "t", "input": "i"}, format="json")

    page = html(logged_in(member).get(detail_url(KeyKind.SECRET, project, api_key)))

    assert page.count('class="bar-refused"') == 4  # hourly and daily, wide and narrow
    assert "3 requests, 2 refused" in page
    assert "3 requests in the last 48 hours, 2 refused." in page


def test_the_usage_page_shows_copied_history(member, project):
    api_key, _ = make_key(KeyKind.SECRET, project=project)
    day = bucket_start(timezone.now(), Granularity.DAY) - timedelta(days=40)
    KeyUsage.objects.create(
        key=api_key, granularity="day", start=day, epoch="e", requests=1234, refused=5
    )

    page = html(logged_in(member).get(detail_url(KeyKind.SECRET, project, api_key)))

    assert '<span class="stat-value">1,234</span>' in page
    assert f"{day:%a %-d %b %Y}: 1,234 requests, 5 refused" in page
    assert "No requests in the last 48 hours." in page


def test_the_usage_page_of_a_revoked_key_keeps_its_history(owner, project):
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)
    use(KeyKind.SECRET, project, plaintext)
    revoke_key(actor=owner, api_key=api_key)

    page = html(logged_in(owner).get(detail_url(KeyKind.SECRET, project, api_key)))

    assert "Revoked" in page
    assert "1 request in the last 48 hours" in page


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_an_outsider_gets_404_on_a_keys_usage_page(outsider, project, kind):
    api_key, _ = make_key(kind, project=project)

    response = logged_in(outsider).get(detail_url(kind, project, api_key))

    assert response.status_code == 404
    assert api_key.name not in html(response)


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_a_key_of_another_collection_has_no_usage_page_here(member, project, kind):
    others = [make_key(other, project=project)[0] for other in KINDS if other is not kind]
    others.append(make_key(kind, project=ProjectFactory())[0])
    client = logged_in(member)

    for api_key in others:
        assert client.get(detail_url(kind, project, api_key)).status_code == 404


def test_the_usage_page_needs_a_session_and_is_read_only(owner, project):
    from django.test import Client

    api_key, _ = make_key(KeyKind.SECRET, project=project)
    url = detail_url(KeyKind.SECRET, project, api_key)

    anonymous = Client().get(url)
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/login/?next=")
    assert logged_in(owner).post(url).status_code == 405


# Chart geometry


def buckets(counts, refused=None):
    now = timezone.now()
    start = bucket_start(now, Granularity.DAY) - timedelta(days=len(counts) - 1)
    refused = refused or [0] * len(counts)
    return [
        {"start": start + timedelta(days=i), "requests": n, "refused": r}
        for i, (n, r) in enumerate(zip(counts, refused, strict=True))
    ]


@pytest.mark.parametrize(
    ("busiest", "axis"),
    [(0, 4), (3, 4), (5, 8), (9, 12), (50, 60), (99, 100), (101, 120), (1234, 1600)],
)
def test_axis_maximum_is_round_and_splits_in_four_whole_steps(busiest, axis):
    assert charts.nice_ceiling(busiest) == axis
    assert axis % 4 == 0 and axis >= busiest


@pytest.mark.parametrize(
    ("number", "text"),
    [(0, "0"), (950, "950"), (1200, "1.2k"), (15000, "15k"), (2_400_000, "2.4M")],
)
def test_axis_labels_are_compact(number, text):
    assert charts.compact(number) == text


def test_bars_stay_inside_the_plot_and_refusals_sit_on_top():
    series = buckets([0, 1, 40, 10_000], [0, 1, 10, 0])

    chart = charts.bar_chart(series, "day", charts.WIDE)

    assert chart.y_ticks[-1].label == "10k"
    for column in chart.columns:
        assert chart.left <= column.x and column.x + column.width <= chart.right + 0.01
        assert chart.top - charts.MIN_BAR_HEIGHT <= column.refused_y
        assert column.accepted_y + column.accepted_height == pytest.approx(chart.bottom)
        assert column.refused_y + column.refused_height == pytest.approx(column.accepted_y)
    empty, only_refused, mixed, busiest = chart.columns
    assert empty.accepted_height == empty.refused_height == 0
    assert only_refused.accepted_height == 0 and only_refused.refused_height > 0
    assert only_refused.refused_height == charts.MIN_BAR_HEIGHT, "1 request is still visible"
    assert mixed.accepted_height >= charts.MIN_BAR_HEIGHT <= mixed.refused_height
    assert busiest.accepted_height == pytest.approx(chart.bottom - chart.top)


def test_hourly_labels_name_midnight_by_its_date():
    now = timezone.now()
    start = bucket_start(now, Granularity.HOUR) - timedelta(hours=47)
    series = [{"start": start + timedelta(hours=i), "requests": 0, "refused": 0} for i in range(48)]

    chart = charts.bar_chart(series, "hour", charts.WIDE, now)

    labels = [tick.label for tick in chart.x_ticks]
    assert len(labels) == 8
    assert all(re.fullmatch(r"\d\d:00|\d{1,2} [A-Z][a-z]{2}", label) for label in labels)
    assert chart.columns[-1].current and chart.columns[-1].label.endswith("(so far)")
    assert chart.summary == "No requests in the last 48 hours."


def test_an_unused_keys_chart_is_its_baseline_and_its_name():
    """No request in 30 days: no thirty "0 requests" columns (3.7 KB a row, which a list of
    unused keys, ?unused=30, drew 50 times); the chart's name says it."""
    now = timezone.now()
    days = [bucket_start(now, "day") - timedelta(days=i) for i in range(29, -1, -1)]
    idle = charts.sparkline([{"start": d, "requests": 0, "refused": 0} for d in days], now)
    once = charts.sparkline(
        [{"start": d, "requests": int(d == days[3]), "refused": 0} for d in days], now
    )

    svg = charts.sparkline_svg(idle)

    assert "<g" not in svg and "<title>" not in svg
    assert (
        'aria-label="Requests per day (UTC), last 30 days. No requests in the last 30 days."' in svg
    )
    assert '<line class="spark-base"' in svg
    assert len(svg) < 400
    assert charts.sparkline_svg(once).count('<g class="spark-column') == 30


def test_the_row_chart_names_its_busiest_day_as_a_day():
    """The 30-day sparkline has 30 buckets, fewer than an hourly chart's 48: its
    description must still read as days."""
    now = timezone.now()
    days = [bucket_start(now, "day") - timedelta(days=i) for i in range(29, -1, -1)]
    series = [
        {"start": d, "requests": 5 if i == 10 else 1, "refused": 0} for i, d in enumerate(days)
    ]
    summary = charts.sparkline(series, now).summary
    assert summary.endswith(f"Busiest: {days[10]:%a %-d %b %Y} (5).")
    assert " to " not in summary


def test_the_row_chart_is_drawn_with_its_texts_escaped():
    """Drawn in Python (a template took 3 ms a row, a third of a key page of 50 rows): every
    text goes through escaping, as it did in the template."""
    now = timezone.now()
    days = [bucket_start(now, "day") - timedelta(days=i) for i in range(29, -1, -1)]
    series = [{"start": d, "requests": i % 4, "refused": i % 2} for i, d in enumerate(days)]
    chart = charts.sparkline(series, now)
    hostile = dataclasses.replace(
        chart,
        title='<script>"x"</script>',
        summary="<i>busy</i> & more",
        columns=(dataclasses.replace(chart.columns[0], label="<b>&"), *chart.columns[1:]),
    )

    svg = charts.sparkline_svg(hostile)

    assert "<script>" not in svg and "&lt;script&gt;&quot;x&quot;" in svg
    assert "<title>&lt;b&gt;&amp;</title>" in svg
    assert "&lt;i&gt;busy&lt;/i&gt; &amp; more" in svg and "<i>" not in svg
    assert svg.count('<g class="spark-column') == 30
    assert svg.count('class="spark-bar"') == sum(1 for b in series if b["requests"] > b["refused"])
    assert svg.count('class="spark-refused"') == sum(1 for b in series if b["refused"])


def test_the_last_request_time_is_said_once_to_a_screen_reader(owner, project):
    """ "When" showed the relative time with its exact time for screen readers, then the exact
    time again for the eye: a screen reader said it twice (a first-hour walkthrough)."""
    api_key, plaintext = make_key(KeyKind.SECRET, project=project)
    assert use(KeyKind.SECRET, project, plaintext) == 200
    api_key.refresh_from_db()

    page = html(logged_in(owner).get(detail_url(KeyKind.SECRET, project, api_key)))
    when = re.search(r"<dt>When</dt><dd>(.*?)</dd>", page, re.DOTALL).group(1)
    heard = re.sub(r'<(\w+)[^>]*aria-hidden="true"[^>]*>.*?</\1>', "", when, flags=re.DOTALL)
    seen = re.sub(r'<span class="visually-hidden">.*?</span>', "", when, flags=re.DOTALL)

    exact = utc(api_key.last_used_at)
    assert re.sub(r"<[^>]+>", "", heard).count(exact) == 1
    assert re.sub(r"<[^>]+>", "", seen).count(exact) == 1
