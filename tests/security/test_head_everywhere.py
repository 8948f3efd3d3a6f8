"""HEAD answers as GET does, without a body, on every dashboard URL (RFC 9110 §9.3.2: a
server that serves GET must serve HEAD). Uptime monitors, link checkers and mail scanners
send it; a 405 read as the page being down."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.pages import logged_in
from tests.security.test_csrf_everywhere import dashboard, dashboard_routes  # noqa: F401

pytestmark = pytest.mark.django_db


def test_every_dashboard_url_answers_head_as_it_answers_get(dashboard):  # noqa: F811
    clients = {"owner": logged_in(dashboard.owner), "visitor": Client()}
    differ, with_body, pages = [], [], set()
    for route, pattern in dashboard_routes():
        url = dashboard.url(route, pattern)
        for who, client in clients.items():
            head = client.head(url)
            get = client.get(url)
            if get.status_code == 200:
                pages.add(url)
            if (head.status_code, head.get("Location")) != (get.status_code, get.get("Location")):
                differ.append((who, url, head.status_code, get.status_code))
            if b"".join(head.streaming_content) if head.streaming else head.content:
                with_body.append((who, url))  # a download's HEAD streams nothing

    assert differ == []
    assert with_body == []
    project, org = dashboard.values["project_id"], dashboard.values["org_id"]
    assert {
        "/",
        "/account/",
        "/login/",
        "/signup/",
        f"/projects/{project}/api-keys/",
        f"/projects/{project}/sdk-keys/",
        f"/orgs/{org}/api-keys/",
        f"/orgs/{org}/webhooks/",
    } <= pages  # the walk reached the pages
