"""CSRF on every dashboard page, found by walking the URLconf rather than listed by hand.

The dashboard is everything outside /v1/ (the API, whose browser requests are
checked by its own cookie authentication) and /admin/ (Django's). Its session
is a cookie, so every view must be CSRF-protected, every POST without the token
refused before the view runs, and every `<form method="post">` it renders must
carry the token. A new page is covered by these tests the day it is added.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from apps.accounts.models import AuthSession
from apps.accounts.password_reset import make_reset_token
from apps.apikeys.keyformat import KeyKind
from apps.invitations.models import Invitation
from apps.invitations.services import invite_member
from apps.orgs.models import Membership
from apps.projects.models import Project
from apps.webhooks import services as webhook_services
from apps.webhooks.models import EventType, Webhook
from tests.factories import make_key, make_legacy_key
from tests.pages import html, logged_in

pytestmark = pytest.mark.django_db

#: Not the dashboard: the API (no session cookie is read without its own CSRF check) and
#: Django's admin. The ops endpoints (/healthz, /readyz, /metrics) are middleware, no route.
NOT_DASHBOARD = ("v1/", "admin/")
#: What Django's CSRF failure page (core.views.csrf_failure) says.
CSRF_REFUSAL = "Form expired"
PUBLIC_URL = "https://8.8.8.8/hooks/sigsentry"


def _walk(patterns, prefix: str = ""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern))
        else:
            yield prefix + str(entry.pattern), entry


def dashboard_routes() -> list[tuple[str, URLPattern]]:
    """(route, pattern) of every dashboard URL, e.g. ("orgs/<uuid:org_id>/webhooks/", …)."""
    return [
        (route, pattern)
        for route, pattern in _walk(get_resolver().url_patterns)
        if not route.startswith(NOT_DASHBOARD)
    ]


@dataclass
class Form:
    action: str | None
    hidden: dict[str, str] = field(default_factory=dict)


class PostForms(HTMLParser):
    """The `<form method="post">` elements of a page, with their hidden inputs."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self._open: Form | None = None
        self.feed(page)
        self.close()

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "form":
            is_post = (attributes.get("method") or "").lower() == "post"
            self._open = Form(attributes.get("action")) if is_post else None
            if self._open is not None:
                self.forms.append(self._open)
        elif tag == "input" and self._open is not None and attributes.get("type") == "hidden":
            self._open.hidden[attributes.get("name") or ""] = attributes.get("value") or ""

    def handle_endtag(self, tag):
        if tag == "form":
            self._open = None


@dataclass
class Dashboard:
    """One of everything a dashboard URL can name, so that every page renders its forms."""

    owner: object
    values: dict[str, str]
    key_ids: dict[KeyKind, str]
    tokens: dict[str, str]  # by the route's first segment: reset/ or invitations/

    def url(self, route: str, pattern: URLPattern) -> str:
        def value(match: re.Match) -> str:
            name = match.group(1)
            if name == "key_id":
                return self.key_ids[pattern.default_args["kind"]]
            if name == "token":
                return self.tokens[route.split("/")[0]]
            assert name in self.values, f"{route}: add a {name} to the `dashboard` fixture"
            return self.values[name]

        return "/" + re.sub(r"<(?:\w+:)?(\w+)>", value, route)


@pytest.fixture
def dashboard(owner, member, organization, project, mailbox) -> Dashboard:
    keys = {kind: make_key(kind, project=project, actor=owner)[0] for kind in KeyKind}
    make_legacy_key(project)  # its row offers the replace form
    webhook = webhook_services.create_webhook(
        actor=owner, organization=organization, url=PUBLIC_URL, events=list(EventType.values)
    ).webhook
    Webhook.objects.filter(pk=webhook.pk).update(disabled_at=timezone.now())  # + enable form
    invitation = invite_member(
        actor_membership=Membership.objects.get(user=owner, organization=organization),
        email="newcomer@example.com",
        role="member",
    )
    [mail] = mailbox.messages("newcomer@example.com")
    invitation_token = mail.link("/invitations/").rstrip("/").rsplit("/", 1)[1]
    logged_in(owner)  # a session of the owner's, for the sessions list
    return Dashboard(
        owner=owner,
        values={
            "org_id": str(organization.id),
            "project_id": str(project.id),
            "user_id": str(member.id),
            "webhook_id": str(webhook.id),
            "invitation_id": str(invitation.id),
            "session_id": str(AuthSession.objects.filter(user=owner).first().id),
        },
        key_ids={kind: str(api_key.id) for kind, api_key in keys.items()},
        tokens={"reset": make_reset_token(owner), "invitations": invitation_token},
    )


# (a) No view is exempt, and every POST without the token is refused -----------------


def test_no_dashboard_view_is_csrf_exempt():
    routes = dashboard_routes()
    names = {pattern.name for _route, pattern in routes}
    assert {"home", "project-create", "webhooks", "webhook-enable", "login"} <= names

    exempt = [route for route, pattern in routes if getattr(pattern.callback, "csrf_exempt", False)]

    assert exempt == []  # none is exempt; an exception would need its reason here


def test_every_dashboard_url_refuses_a_post_without_the_token(dashboard):
    client = logged_in(dashboard.owner, Client(enforce_csrf_checks=True))
    before = (Project.objects.count(), Webhook.objects.count(), Invitation.objects.count())

    answers = {
        route: client.post(dashboard.url(route, pattern), {"name": "Forged", "url": PUBLIC_URL})
        for route, pattern in dashboard_routes()
    }

    accepted = {
        route: response.status_code
        for route, response in answers.items()
        if response.status_code != 403 or CSRF_REFUSAL not in html(response)
    }
    assert accepted == {}
    assert (Project.objects.count(), Webhook.objects.count(), Invitation.objects.count()) == before


@pytest.mark.parametrize("page", ["webhooks", "home"])
def test_the_create_forms_work_with_their_token_and_are_refused_without(page, owner, organization):
    """The 403 above is the missing token's doing: the same POST with the page's token works."""
    client = logged_in(owner, Client(enforce_csrf_checks=True))
    if page == "webhooks":
        page_url = action = f"/orgs/{organization.id}/webhooks/"
        fields, created, status = {"url": PUBLIC_URL, "events": ["key.minted"]}, Webhook, 200
    else:
        page_url, action = "/", f"/orgs/{organization.id}/projects/"
        fields, created, status = {"name": "Forged"}, Project, 302
    [form] = [f for f in PostForms(html(client.get(page_url))).forms if f.action == action]
    count = created.objects.count()

    tokenless = {
        name: value for name, value in form.hidden.items() if name != "csrfmiddlewaretoken"
    }
    without = client.post(action, tokenless | fields)

    assert without.status_code == 403 and CSRF_REFUSAL in html(without)
    assert created.objects.count() == count
    with_token = client.post(action, form.hidden | fields)
    assert with_token.status_code == status, html(with_token)
    assert created.objects.count() == count + 1


# (b) Every POST form of every page carries the token ------------------------------------


def test_every_post_form_of_every_dashboard_page_carries_the_csrf_token(dashboard):
    clients = {"owner": logged_in(dashboard.owner), "visitor": Client()}
    forms = {}
    for route, pattern in dashboard_routes():
        url = dashboard.url(route, pattern)
        for who, client in clients.items():
            response = client.get(url)
            if response.status_code != 200 or not response["Content-Type"].startswith("text/html"):
                continue
            for form in PostForms(html(response)).forms:
                forms[(who, url, form.action or url)] = bool(form.hidden.get("csrfmiddlewaretoken"))

    without_token = [where for where, has_token in forms.items() if not has_token]
    assert without_token == []
    org, hook = dashboard.values["org_id"], dashboard.values["webhook_id"]
    assert {
        f"/orgs/{org}/projects/",
        f"/orgs/{org}/webhooks/",
        f"/orgs/{org}/webhooks/{hook}/enable/",
        f"/orgs/{org}/webhooks/{hook}/delete/",
        f"/orgs/{org}/members/{dashboard.values['user_id']}/role/",
        f"/orgs/{org}/invitations/",
        f"/projects/{dashboard.values['project_id']}/api-keys/",
        "/account/password/",
        "/logout/",
        "/login/",
        "/signup/",
        "/reset/",
    } <= {action for _who, _url, action in forms}  # the walk reached the pages and their forms


def test_every_post_form_in_a_template_has_the_csrf_token():
    """Forms that only some states render (the 2FA steps, an invitation's answer) too."""
    templates = Path(settings.BASE_DIR) / "templates"
    post_form = re.compile(r"<form\b[^>]*\bmethod=\"post\"[^>]*>(.*?)</form>", re.S)
    missing = []
    forms = 0
    for path in sorted(templates.rglob("*.html")):  # our admin login template too
        text = path.read_text()
        for match in post_form.finditer(text):
            forms += 1
            if "{% csrf_token %}" not in match.group(1):
                missing.append(
                    (str(path.relative_to(templates)), text[: match.start()].count("\n") + 1)
                )
    assert forms > 20  # the pattern finds the forms (32 when written)
    assert missing == []
