"""The admin and the API docs in Chromium under the dashboard's Content-Security-Policy
(no 'unsafe-inline' for styles since a headers audit): every CSP violation is a console
error, which fails the test (tests/browser/conftest.py)."""

from __future__ import annotations

import pytest
from django.contrib.admin import site as admin_site
from django.urls import reverse

from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from apps.orgs.models import Membership
from tests.factories import PASSWORD, UserFactory, make_key

pytestmark = pytest.mark.browser


def test_every_admin_list_add_and_change_page_renders_without_a_csp_violation(
    ui, live_url, project, owner
):
    staff = UserFactory(is_staff=True, is_superuser=True)
    make_key(KeyKind.SECRET, project=project, name="Checkout")
    ui.goto("/admin/login/")
    ui.page.fill("#id_username", staff.email)
    ui.page.fill("#id_password", PASSWORD)
    ui.page.click("input[type=submit]")
    ui.page.wait_for_url(ui.url("/admin/"))

    examples = {ApiKey: ApiKey.objects.first(), Membership: Membership.objects.first()}
    for model in admin_site._registry:
        meta = model._meta
        ui.goto(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
        row = examples.get(model) or model.objects.first()
        if row is not None:
            ui.goto(reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[row.pk]))
            if model is ApiKey:
                ui.shot("admin-api-key-change")
        add = f"admin:{meta.app_label}_{meta.model_name}_add"
        response = ui.page.goto(ui.url(reverse(add)))
        assert response.status in (200, 403), (add, response.status)
        if response.status == 403:  # read-only models: Chromium logs the status itself
            ui.errors[:] = [e for e in ui.errors if "status of 403" not in e]


def test_the_api_docs_render_every_operation(ui, live_url):
    ui.goto("/v1/docs")
    ui.page.wait_for_selector(".opblock")
    assert ui.page.locator(".opblock").count() > 40
    assert ui.page.evaluate("getComputedStyle(document.body).margin") == "0px"  # docs.css
    ui.shot("api-docs")
    ui.page.get_by_role("link", name="← Back to the dashboard").click()
    ui.page.wait_for_url(ui.url("/login/?next=%2F"))  # the dashboard, once logged in
