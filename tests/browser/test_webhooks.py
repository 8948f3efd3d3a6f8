"""Organization → Webhooks in Chromium: add (secret shown once), deliveries, re-enable, remove."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from apps.apikeys.keyformat import KeyKind
from apps.webhooks.models import Delivery, Webhook
from tests.factories import PASSWORD, make_key

pytestmark = pytest.mark.browser


def test_add_see_deliveries_enable_and_remove_a_webhook(ui_factory, owner, organization, project):
    ui = ui_factory(viewport={"width": 1280, "height": 900})
    ui.login(owner.email, PASSWORD)
    ui.goto(f"/orgs/{organization.id}/members/")
    ui.page.locator("[data-nav]").get_by_role("link", name="Webhooks").click()
    path = f"/orgs/{organization.id}/webhooks/"
    ui.page.wait_for_url(ui.url(path))
    ui.shot("webhooks-empty")

    page = ui.page
    page.get_by_label("Endpoint URL").fill("https://8.8.8.8/hooks/sigsentry")
    page.get_by_label("key.unused", exact=True).uncheck()
    page.get_by_role("button", name="Add webhook").click()
    dialog = page.locator("dialog[data-secret-dialog]")
    dialog.wait_for(state="visible")
    assert page.evaluate("document.querySelector('dialog[data-secret-dialog]').matches(':modal')")
    secret = dialog.locator("code[data-secret]").inner_text().strip()
    assert re.fullmatch(r"whsec_[0-9A-Za-z]{32}", secret)
    assert page.url == ui.url(path)
    ui.shot("webhooks-secret-dialog")
    # Escape asks first, in the dialog, in the secret's own words; Escape again goes back.
    page.keyboard.press("Escape")
    question = dialog.get_by_role("alertdialog", name="Close without copying?")
    expect(question).to_contain_text("You will not see this signing secret again.")
    expect(question.get_by_role("button", name="Keep it open")).to_be_focused()
    page.keyboard.press("Escape")
    expect(question).to_be_hidden()
    page.get_by_role("button", name="I have copied it").click()
    dialog.wait_for(state="detached")
    assert secret not in page.content()
    webhook = Webhook.objects.get()
    assert "key.unused" not in webhook.events

    # Some history: one delivered, one retrying after a 500, and the webhook disabled.
    make_key(KeyKind.SECRET, project=project, name="CI")
    make_key(KeyKind.PUBLIC, project=project, name="Website")
    first, second = Delivery.objects.order_by("created_at", "id")
    now = timezone.now()
    Delivery.objects.filter(pk=first.pk).update(
        status="delivered", attempts=1, last_status_code=200, last_attempt_at=now
    )
    Delivery.objects.filter(pk=second.pk).update(
        attempts=3,
        last_status_code=500,
        last_attempt_at=now,
        next_attempt_at=now + timedelta(seconds=80),
    )
    Webhook.objects.update(disabled_at=now, consecutive_failures=100)
    ui.goto(path)
    card = page.locator("section.webhook-card")
    assert "Delivered" in card.inner_text() and "HTTP 500" in card.inner_text()
    assert "Disabled" in card.inner_text()
    ui.shot("webhooks-deliveries")

    page.get_by_role("button", name="Enable again").click()
    page.wait_for_url(ui.url(path))
    assert "enabled again" in page.inner_text("main")
    assert Webhook.objects.get().is_enabled

    narrow = ui_factory(viewport={"width": 390, "height": 844})
    narrow.login(owner.email, PASSWORD)
    narrow.goto(path)
    narrow.shot("webhooks-narrow")
    width = narrow.page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, "nothing may overflow the viewport sideways"

    page.get_by_role("button", name="Remove the webhook to https://8.8.8.8").click()
    confirm = page.locator("dialog[data-confirm-dialog]")
    confirm.get_by_role("button", name="Remove webhook").click()
    # The answer redirects to this same address: wait for its message, not for the URL.
    page.get_by_text("was removed").wait_for()
    assert page.url == ui.url(path)
    assert not Webhook.objects.exists()
