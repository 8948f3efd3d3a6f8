"""Browser tests: Playwright driving the system Chromium against a real gunicorn.

One Chromium for the whole session; each test gets a fresh context (no shared
cookies). Every console error, uncaught page error and CSP violation fails the
test that caused it. Full-page screenshots go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
TIMEOUT_MS = 15_000


@pytest.fixture(scope="package")
def browser():
    """One Chromium for the browser tests, closed after the last of them.

    While Playwright's sync API is open it runs an event loop in this thread, and
    Django refuses ORM calls from a thread with a running loop; the tests' own ORM
    use is synchronous, so DJANGO_ALLOW_ASYNC_UNSAFE is set for exactly that long.
    The tests after this package get Django's check back.
    """
    if not os.path.exists(CHROMIUM):
        reason = f"Chromium is not installed at {CHROMIUM}; browser tests need it."
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI is set: this must not be skipped)")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@dataclass
class Ui:
    """A browser tab on the live server that records console errors."""

    page: object
    base: str
    errors: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base + path

    def goto(self, path: str, *, status: int = 200):
        response = self.page.goto(self.url(path))
        assert response is not None and response.status == status, (path, response.status)
        if status >= 400:
            # Chromium logs the document's own error status; that one is expected.
            self.errors[:] = [e for e in self.errors if f"status of {status}" not in e]
        return response

    def shot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    def login(self, email: str, password: str) -> None:
        self.goto("/login/")
        self.page.get_by_label("Email", exact=True).fill(email)
        self.page.get_by_label("Password", exact=True).fill(password)
        self.page.get_by_role("button", name="Log in").click()
        self.page.wait_for_url(self.url("/"))

    def expect_console_error(self, text: str) -> None:
        """Drop the console errors a test provoked on purpose (and fail if there was none)."""
        expected = [error for error in self.errors if text in error]
        assert expected, f"expected a console error containing {text!r}"
        self.errors[:] = [error for error in self.errors if text not in error]

    def cookie(self, name: str) -> str | None:
        for cookie in self.page.context.cookies(self.base):
            if cookie["name"] == name:
                return cookie["value"]
        return None


def _record_errors(page, errors: list[str]) -> None:
    def on_console(message):
        if message.type == "error":
            errors.append(f"console: {message.text} @ {page.url}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc} @ {page.url}"))


@pytest.fixture
def ui_factory(browser, live_url):
    """Make fresh tabs (each with its own cookies); all must end without console errors."""
    contexts = []
    tabs: list[Ui] = []

    def make(viewport=None, *, javascript: bool = True, timezone_id=None, locale=None) -> Ui:
        """A tab; `timezone_id` and `locale` the viewer's (America/Los_Angeles, de-DE), the
        system's by default; the server's zone is always UTC."""
        context = browser.new_context(
            viewport=viewport or {"width": 1366, "height": 900},
            permissions=["clipboard-read", "clipboard-write"],
            base_url=live_url,
            java_script_enabled=javascript,
            timezone_id=timezone_id,
            locale=locale,
        )
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        tab = Ui(page=page, base=live_url)
        _record_errors(page, tab.errors)
        tabs.append(tab)
        return tab

    yield make
    errors = [error for tab in tabs for error in tab.errors]
    for context in contexts:
        context.close()
    assert not errors, "browser console errors:\n" + "\n".join(errors)


@pytest.fixture
def ui(ui_factory) -> Ui:
    return ui_factory()


def call_api(base: str, path: str, credential: str, headers: dict | None = None, body=None):
    """(status, JSON body, headers) of a request with a bearer credential, outside the browser.

    A GET, or a POST of `body` as JSON when one is given.
    """
    request = urllib.request.Request(
        base + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {credential}",
            "Content-Type": "application/json",
            **(headers or {}),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), dict(error.headers)


def contrast_ratio(first: str, second: str) -> float:
    """WCAG's contrast ratio of two computed colours, `rgb(r, g, b)`."""

    def luminance(rgb: str) -> float:
        channels = [int(part) / 255 for part in rgb[rgb.index("(") + 1 : -1].split(",")[:3]]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    darker, lighter = sorted((luminance(first), luminance(second)))
    return (lighter + 0.05) / (darker + 0.05)


def live_regions_heard(page) -> list[tuple[str, str]]:
    """(role, text) of each status or alert that Chromium's accessibility tree keeps.

    What a screen reader can say, not what the DOM holds: a region outside an open modal
    dialog is in the DOM, but the tree marks it ignored (and everything in it) and nothing
    in it is said. Its text is that of the region's kept text nodes.
    """
    session = page.context.new_cdp_session(page)
    try:
        nodes = session.send("Accessibility.getFullAXTree")["nodes"]
    finally:
        session.detach()
    by_id = {node["nodeId"]: node for node in nodes}

    def kept_text(node) -> str:
        if node.get("ignored"):
            return ""
        if node.get("role", {}).get("value") == "StaticText":
            return node.get("name", {}).get("value", "")
        return " ".join(
            filter(None, (kept_text(by_id[c]) for c in node.get("childIds", []) if c in by_id))
        )

    return [
        (node["role"]["value"], kept_text(node).strip())
        for node in nodes
        if not node.get("ignored") and node.get("role", {}).get("value") in ("status", "alert")
    ]
