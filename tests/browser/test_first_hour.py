"""A newcomer's first hour in Chromium, where it went wrong: turning two-factor on and
trying it at once, on a phone's width (found by a first-hour walkthrough)."""

from __future__ import annotations

import time

import pyotp
import pytest

from apps.accounts import twofactor
from tests.factories import PASSWORD

pytestmark = pytest.mark.browser


def _fresh_step(margin: float = 10.0) -> None:
    """Wait, if needed, so that the next `margin` seconds stay within one 30-second step."""
    into = time.time() % 30
    if into > 30 - margin:
        time.sleep(30 - into + 0.05)


def test_trying_two_factor_at_once_says_to_wait_and_its_address_leads_back(ui_factory, owner):
    """The code the app still shows was used to turn it on: the refusal says to wait for the
    next code, and Enter in the address bar (/login/2fa/, a form's address) shows a page
    that leads back to the login, not an empty 405."""
    secret = twofactor.start_setup(user=owner).secret
    _fresh_step()
    used = pyotp.TOTP(secret).now()
    twofactor.enable(user=owner, code=used)
    ui = ui_factory(viewport={"width": 390, "height": 844})
    page = ui.page

    ui.goto("/login/")
    page.get_by_label("Email", exact=True).fill(owner.email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_label("Authentication code", exact=True).fill(used)
    page.get_by_role("button", name="Verify").click()
    page.get_by_text("after using one, wait for the next").wait_for()
    ui.shot("first-hour-2fa-code-used-narrow")
    assert page.url == ui.url("/login/2fa/")

    ui.goto("/login/2fa/", status=405)
    page.get_by_role("heading", name="Nothing to show here").wait_for()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    ui.shot("first-hour-form-address-opened-narrow")
    page.get_by_role("link", name="Log in").click()
    page.wait_for_url(ui.url("/login/"))
