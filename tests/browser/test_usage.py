"""Key usage in Chromium: a row's 30-day chart, the unused filter and a key's usage page,
at 1280 px and at 390 px (SPEC §4.9)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.apikeys.gate.counters import bucket_start
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey, Granularity, KeyUsage, KeyUsageIp
from tests.browser.conftest import SCREENSHOTS, Ui
from tests.factories import PASSWORD, make_key

pytestmark = pytest.mark.browser

AGENT = "deploy-bot/3.1 (+https://ci.example.com)"


def usage_history(api_key: ApiKey) -> None:
    """Copied counts for the last days and hours, as the flush would have left them."""
    now = timezone.now()
    hour, day = bucket_start(now, Granularity.HOUR), bucket_start(now, Granularity.DAY)
    rows = [
        KeyUsage(
            key=api_key,
            granularity=Granularity.HOUR,
            start=hour - timedelta(hours=i),
            epoch="copied",
            requests=5 + (i * 7) % 13,
            refused=1 if i % 6 == 0 else 0,
        )
        for i in range(40)
    ]
    rows += [
        KeyUsage(
            key=api_key,
            granularity=Granularity.DAY,
            start=day - timedelta(days=i),
            epoch="copied",
            requests=120 + (i * 37) % 90,
            refused=3 if i % 4 == 0 else 0,
        )
        for i in range(60)
    ]
    KeyUsage.objects.bulk_create(rows)
    KeyUsageIp.objects.create(
        key=api_key, ip="203.0.113.5", epoch="copied", requests=812, last_seen_at=now
    )
    ApiKey.objects.filter(id=api_key.id).update(
        last_used_at=now - timedelta(minutes=3),
        last_used_ip="203.0.113.5",
        last_used_user_agent=AGENT,
    )


def page_width(ui) -> int:
    return ui.page.evaluate("document.documentElement.scrollWidth")


def table_overflow(ui) -> int:
    """How far the key table runs past its box: its actions would hide behind a scroll."""
    return ui.page.evaluate(
        "(() => { const w = document.querySelector('.table-wrap');"
        " return w.scrollWidth - w.clientWidth; })()"
    )


def test_row_chart_unused_filter_and_usage_page(ui_factory, owner, project):
    busy, _ = make_key(
        KeyKind.SECRET,
        project=project,
        name="Busy deploy key",
        expires_at=timezone.now() + timedelta(days=3),  # a full expiry time, and "Expiring"
    )
    usage_history(busy)
    forgotten, _ = make_key(KeyKind.SECRET, project=project, name="Forgotten key")
    ApiKey.objects.filter(id=forgotten.id).update(created_at=timezone.now() - timedelta(days=60))
    keys_page = f"/projects/{project.id}/api-keys/"

    ui = ui_factory({"width": 1280, "height": 900})
    ui.login(owner.email, PASSWORD)
    ui.goto(keys_page)
    page = ui.page
    row = page.locator("tr.key-row", has_text="Busy deploy key")
    spark = row.locator("svg.spark")
    assert spark.is_visible()
    assert spark.get_attribute("aria-label").startswith("Requests per day (UTC), last 30 days.")
    assert spark.locator("g.spark-column").count() == 30
    assert "requests" in spark.locator("g.spark-column title").last.text_content()
    assert "203.0.113.5" in row.inner_text()
    assert AGENT[:10] in row.inner_text()
    # Its link names the key it is for (WCAG 2.4.4: the links' list read the same for each).
    assert row.get_by_role("link", name="Usage of Busy deploy key:").count() == 1
    assert page_width(ui) <= 1280
    assert table_overflow(ui) <= 0, "the row actions must not hide behind a scroll at 1280 px"
    ui.shot("usage-list-1280")

    page.get_by_role("link", name="Unused for 30 days").click()
    page.wait_for_url(ui.url(keys_page + "?unused=30#keys"))
    assert page.locator("tr.key-row", has_text="Forgotten key").is_visible()
    assert page.locator("tr.key-row", has_text="Busy deploy key").count() == 0
    ui.shot("usage-list-unused-1280")

    page.get_by_role("link", name="All keys", exact=True).click()
    page.get_by_role("link", name="Busy deploy key", exact=True).click()
    page.wait_for_url(ui.url(f"{keys_page}{busy.id}/"))
    assert page.get_by_role("heading", level=1).inner_text() == "Busy deploy key"
    hourly = page.locator("svg.chart-wide").first
    assert hourly.is_visible()
    assert not page.locator("svg.chart-narrow").first.is_visible()
    # Drawn twice (wide and narrow), announced once: the hidden one is out of the a11y tree.
    # Named by its title alone: the summary is the figure's caption, read once.
    chart_name = "Requests per hour, last 48 hours (UTC)"
    assert page.get_by_role("img", name=chart_name, exact=True).count() == 1
    caption = page.locator("figure.usage-chart figcaption").first
    assert caption.is_visible() and "requests" in caption.inner_text()
    assert hourly.locator("rect.bar-refused").count() > 0
    # Refusals by more than colour (WCAG 1.4.1): hatched, as their legend swatch is.
    refused = hourly.locator("rect.bar-refused").first
    assert refused.evaluate("bar => getComputedStyle(bar).fill") == 'url("#refused-hatch")'
    assert page.locator("svg.svg-defs pattern#refused-hatch").count() == 1
    swatch = page.locator(".swatch-refused").first
    assert "repeating-linear-gradient" in swatch.evaluate(
        "swatch => getComputedStyle(swatch).backgroundImage"
    )
    assert hourly.locator("g.chart-x-labels text").count() == 8
    assert "203.0.113.5" in page.locator("table.ips-table").inner_text()
    assert AGENT in page.locator("code.user-agent").inner_text()
    assert page_width(ui) <= 1280
    ui.shot("usage-page-1280")

    phone = ui_factory({"width": 390, "height": 844})
    phone.login(owner.email, PASSWORD)
    phone.goto(f"{keys_page}{busy.id}/")
    narrow = phone.page.locator("svg.chart-narrow").first
    assert narrow.is_visible()
    assert not phone.page.locator("svg.chart-wide").first.is_visible()
    assert narrow.bounding_box()["width"] <= 390
    assert page_width(phone) <= 390, "nothing overflows a phone's width"
    phone.shot("usage-page-390")
    phone.goto(keys_page + "?unused=30")
    assert page_width(phone) <= 390
    phone.shot("usage-list-unused-390")


def test_a_rows_refusals_are_told_from_its_requests_without_colour(
    browser, live_url, owner, project
):
    """An audit (WCAG 1.4.1): a row's refused days were red on the violet bars, 1.1:1 in
    grey. They are hatched, as the usage page's bars and the legend are: the one pattern,
    defined once on the page. Looked at in Chromium's achromatopsia (no colour at all)."""
    key, _ = make_key(KeyKind.SECRET, project=project, name="Busy deploy key")
    usage_history(key)
    context = browser.new_context(
        base_url=live_url, viewport={"width": 1280, "height": 900}, device_scale_factor=4
    )
    try:
        page = context.new_page()
        Ui(page, live_url).login(owner.email, PASSWORD)
        page.goto(f"/projects/{project.id}/api-keys/")
        spark = page.locator("tr.key-row", has_text="Busy deploy key").locator("svg.spark")
        session = context.new_cdp_session(page)
        session.send("Emulation.setEmulatedVisionDeficiency", {"type": "achromatopsia"})
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        spark.screenshot(path=str(SCREENSHOTS / "usage-spark-achromatopsia.png"))
        page.locator("tr.key-row", has_text="Busy deploy key").screenshot(
            path=str(SCREENSHOTS / "usage-row-achromatopsia.png")
        )

        refused = spark.locator("rect.spark-refused")
        assert refused.count() == 8  # every fourth day of 30
        fills = refused.evaluate_all("bars => bars.map(bar => getComputedStyle(bar).fill)")
        assert set(fills) == {'url("#refused-hatch")'}, fills
        assert page.locator("svg.svg-defs pattern#refused-hatch").count() == 1
        accepted = spark.locator("rect.spark-bar").first.evaluate("b => getComputedStyle(b).fill")
        assert accepted.startswith("rgb("), "the accepted bars stay plain"
        # A cap apart from its bar: seen as two pieces even where the hatch is a sliver.
        gaps = spark.locator("g.spark-column:has(rect.spark-refused)").evaluate_all(
            """columns => columns.map(column => {
                const bar = column.querySelector("rect.spark-bar").getBBox();
                const cap = column.querySelector("rect.spark-refused").getBBox();
                return bar.y - (cap.y + cap.height);
            })"""
        )
        assert len(gaps) == 8 and all(gap > 0.99 for gap in gaps), gaps
    finally:
        context.close()
