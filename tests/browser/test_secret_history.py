"""A key shown once stays shown once in the browser's history (found by a browser-history
audit): Playwright's Chromium runs with the back/forward cache off, so no test could see a
key page restored from it; the page's `pagehide` handler (which drops the key) had no test;
and the Copy button's fallback left the key selected."""

from __future__ import annotations

import pytest

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, Ui, _record_errors
from tests.browser.test_dashboard import mint_from_page
from tests.factories import PASSWORD

pytestmark = pytest.mark.browser


@pytest.fixture
def bfcache_ui(browser, live_url):
    """A tab of a Chromium with its back/forward cache on, as people's browsers have it."""
    chromium = browser.browser_type.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=CHROMIUM_ARGS,
        ignore_default_args=["--disable-back-forward-cache"],
    )
    context = chromium.new_context(base_url=live_url)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    tab = Ui(page=page, base=live_url)
    _record_errors(page, tab.errors)
    yield tab
    chromium.close()
    assert not tab.errors, tab.errors


def log_in(ui, user) -> None:
    ui.login(user.email, PASSWORD)


def test_back_to_a_key_page_never_shows_the_key_again(bfcache_ui, owner, project):
    ui = bfcache_ui
    log_in(ui, owner)
    ui.page.goto(ui.url("/"))
    assert ui.page.evaluate("performance.getEntriesByType('navigation')[0].type") == "navigate"
    path = f"/projects/{project.id}/sdk-keys/"
    key = mint_from_page(ui, path, "Back button")

    ui.page.goto(ui.url("/account/"))
    ui.page.go_back(wait_until="commit")
    ui.page.wait_for_load_state("domcontentloaded")

    assert ui.page.url == ui.url(path)
    assert key not in ui.page.content()


def test_leaving_the_page_drops_the_key_and_its_dialog(ui, owner, project):
    """Whatever a browser's cache policy for `no-store` pages becomes (Chrome is letting
    them into the back/forward cache), a page put away keeps no key."""
    log_in(ui, owner)
    key = mint_from_page(ui, f"/projects/{project.id}/api-keys/", "Put away", ["analysis:read"])

    ui.page.evaluate("dispatchEvent(new PageTransitionEvent('pagehide', {persisted: true}))")

    assert key not in ui.page.content()
    assert ui.page.locator("[data-secret-dialog]").count() == 0


def test_copy_without_the_clipboard_api_leaves_nothing_selected(ui, owner, project):
    """The fallback (a plain-http deployment, a denied permission) copied by selecting the
    key and left it selected: on Linux that is the PRIMARY selection, a middle click away."""
    log_in(ui, owner)
    mint_from_page(ui, f"/projects/{project.id}/sdk-keys/", "Fallback copy")
    ui.page.evaluate(
        "Object.defineProperty(navigator, 'clipboard', {value: {writeText: () =>"
        " Promise.reject(new Error('denied'))}})"
    )

    ui.page.locator("dialog[data-secret-dialog] [data-copy-target]").click()

    ui.page.get_by_role("button", name="Copied", exact=True).wait_for()
    assert ui.page.evaluate("String(getSelection())") == ""
