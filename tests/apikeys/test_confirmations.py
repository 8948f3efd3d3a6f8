"""Destructive dashboard actions are confirmed before they act, even without JavaScript
(SPEC §5, core/confirm.py): a POST without the marker changes nothing and answers a page
that names what would be destroyed; the page's form, confirmed, acts."""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import unescape

import pytest
from django.test import Client

from apps.accounts import services as account_services
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from apps.audit.models import AuditEvent
from apps.invitations.models import Invitation
from apps.invitations.services import invite_member
from apps.orgs.models import Membership
from apps.webhooks.models import Webhook
from core.confirm import CONFIRM_FIELD, CONFIRM_VALUE
from tests.factories import make_key, make_webhook
from tests.orgs.helpers import bearer_client
from tests.pages import CONFIRMED, assert_no_inline_code, html, key_page_url, logged_in

pytestmark = pytest.mark.django_db

HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
CONFIRM_FORM = re.compile(r'<form method="post" action="([^"]+)">(.*?)</form>', re.S)


def api_url(project) -> str:
    return f"/projects/{project.id}/api-keys/"


def confirmation_form(page: str) -> tuple[str, dict[str, list[str]]]:
    """The action of the confirmation page's form and its hidden fields."""
    [(action, body)] = CONFIRM_FORM.findall(page)
    fields: dict[str, list[str]] = {}
    for name, value in HIDDEN.findall(body):
        fields.setdefault(name, []).append(unescape(value))
    return action, fields


def test_the_revoked_message_isolates_the_name_and_escapes_it(owner, project):
    """The message draws the name in a <bdi>: a right-to-left name, or one stored before
    the name rules with an unclosed override, cannot reorder the prefix after it."""
    api_key, _ = make_key(KeyKind.SECRET, project=project, name="Billing <CI>")

    response = logged_in(owner).post(
        f"{api_url(project)}{api_key.id}/revoke/", CONFIRMED, follow=True
    )

    assert (
        f"Revoked “<bdi>Billing &lt;CI&gt;</bdi>” ({api_key.prefix}…). It stopped working."
        in html(response)
    )


def test_project_and_organization_names_in_messages_are_isolated(owner, organization):
    client = logged_in(owner)

    created = client.post(f"/orgs/{organization.id}/projects/", {"name": "شحن <v2>"}, follow=True)

    assert "Project “<bdi>شحن &lt;v2&gt;</bdi>” created." in html(created)


def test_revoke_without_the_marker_changes_nothing_and_asks(owner, project):
    api_key, _ = make_key(KeyKind.SECRET, project=project, name="Billing <CI>")
    url = f"{api_url(project)}{api_key.id}/revoke/"
    events = AuditEvent.objects.count()

    response = logged_in(owner).post(url)

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    page = html(response)
    assert f"Revoke “\u2068Billing &lt;CI&gt;\u2069” ({api_key.prefix}…)?" in page
    assert "This cannot be undone." in page
    action, fields = confirmation_form(page)
    assert action == url
    assert fields[CONFIRM_FIELD] == [CONFIRM_VALUE] and fields["csrfmiddlewaretoken"]
    assert f'<a class="button" href="{api_url(project)}#keys">Cancel</a>' in page
    assert_no_inline_code(page)
    api_key.refresh_from_db()
    assert api_key.revoked_at is None
    assert AuditEvent.objects.count() == events


def test_the_confirmation_page_form_revokes_and_keeps_the_list_it_came_from(owner, project):
    api_key, _ = make_key(KeyKind.SECRET, project=project)
    url = f"{api_url(project)}{api_key.id}/revoke/"
    client = logged_in(owner, Client(enforce_csrf_checks=True))
    row_form = {
        "csrfmiddlewaretoken": re.search(
            r'name="csrfmiddlewaretoken" value="([^"]+)"', html(client.get(api_url(project)))
        ).group(1),
        "page": "1",
        "unused": "30",
        "password": "hunter2-not-for-the-page",  # a field the page has no reason to repeat
    }

    asked = html(client.post(url, row_form))

    action, fields = confirmation_form(asked)
    assert fields["page"] == ["1"] and fields["unused"] == ["30"]
    assert "password" not in fields and "hunter2" not in asked  # only the named fields
    assert f'href="{api_url(project)}?unused=30&amp;page=1#keys">Cancel</a>' in asked
    api_key.refresh_from_db()
    assert api_key.revoked_at is None
    confirmed = client.post(action, {name: values[0] for name, values in fields.items()})
    assert confirmed.status_code == 302 and confirmed["Location"] == api_url(project)
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None and api_key.revoked_by == owner


@pytest.mark.parametrize("kind", [KeyKind.PUBLIC, KeyKind.ORGANIZATION])
def test_every_key_page_asks_before_revoking(owner, project, kind):
    api_key, _ = make_key(kind, project=project)
    base = key_page_url(kind, project)
    client = logged_in(owner)

    asked = client.post(f"{base}{api_key.id}/revoke/")

    assert asked.status_code == 200 and "This cannot be undone." in html(asked)
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at is None
    client.post(f"{base}{api_key.id}/revoke/", CONFIRMED)
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at is not None


# The other destructive forms (those with data-confirm) ----------------------------------


@dataclass
class Destructive:
    url: str
    question: str
    done: object  # () -> bool: whether the action happened
    page: str  # where its form is


@pytest.fixture
def destructive(request, owner, member, organization, mailbox):
    """Each destructive dashboard action but revoke, set up for the owner."""
    name = request.param
    if name == "remove member":
        return Destructive(
            f"/orgs/{organization.id}/members/{member.id}/remove/",
            f"Remove {member.email} from \u2068{organization.name}\u2069?",
            lambda: not Membership.objects.filter(user=member).exists(),
            f"/orgs/{organization.id}/members/",
        )
    if name == "leave organization":
        Membership.objects.filter(user=member).update(role="owner")  # not the last owner
        return Destructive(
            f"/orgs/{organization.id}/members/{owner.id}/remove/",
            f"Leave \u2068{organization.name}\u2069?",
            lambda: not Membership.objects.filter(user=owner).exists(),
            f"/orgs/{organization.id}/members/",
        )
    if name == "cancel invitation":
        invitation = invite_member(
            actor_membership=Membership.objects.get(user=owner),
            email="newcomer@example.com",
            role="member",
        )
        return Destructive(
            f"/orgs/{organization.id}/invitations/{invitation.id}/cancel/",
            "Cancel the invitation of newcomer@example.com?",
            lambda: Invitation.objects.get().cancelled_at is not None,
            f"/orgs/{organization.id}/members/",
        )
    if name == "remove webhook":
        webhook = make_webhook(organization, owner).webhook
        return Destructive(
            f"/orgs/{organization.id}/webhooks/{webhook.id}/delete/",
            f"Remove the webhook to {webhook.url}?",
            lambda: not Webhook.objects.exists(),
            f"/orgs/{organization.id}/webhooks/",
        )
    assert name == "log out everywhere else"
    other = account_services.start_session(owner)
    return Destructive(
        "/account/sessions/others/end/",
        "Log out every other session?",
        lambda: bearer_client(other.access).get("/v1/me").status_code == 401,
        "/account/",
    )


DESTRUCTIVE = [
    "remove member",
    "leave organization",
    "cancel invitation",
    "remove webhook",
    "log out everywhere else",
]


@pytest.mark.parametrize("destructive", DESTRUCTIVE, indirect=True)
def test_each_destructive_form_asks_without_the_marker_and_acts_with_it(owner, destructive):
    client = logged_in(owner)

    asked = client.post(destructive.url)

    assert asked.status_code == 200
    page = html(asked)
    assert destructive.question in unescape(page)
    action, fields = confirmation_form(page)
    assert action == destructive.url and fields[CONFIRM_FIELD] == [CONFIRM_VALUE]
    assert not destructive.done()

    acted = client.post(destructive.url, CONFIRMED)

    assert acted.status_code == 302
    assert destructive.done()


def confirm_attributes(page: str, url: str) -> dict[str, str]:
    """The data-confirm* attributes of the form that posts to `url`."""
    [tag] = re.findall(rf'<form method="post" action="{re.escape(url)}"[^>]*>', page)
    return {
        name: unescape(value) for name, value in re.findall(r'(data-confirm[a-z-]*)="([^"]*)"', tag)
    }


def assert_page_dialog_asks_as_the_server_page(client, case: Destructive) -> None:
    """With JavaScript the page's own dialog asks (templates/includes/confirm_dialog.html;
    not window.confirm(), which a browser may answer "no" unseen): what it asks, filled in
    from the form, is what the server's page asks without JavaScript, with the same button."""
    page = html(client.get(case.page))
    asked = html(client.post(case.url))

    assert_no_inline_code(page)
    assert page.count('<dialog class="form-dialog confirm-dialog"') == 1
    attributes = confirm_attributes(page, case.url)
    assert attributes["data-confirm"] == case.question
    assert attributes["data-confirm-detail"]
    [button] = re.findall(
        r'<button type="submit" class="button button-danger">([^<]+)</button>', asked
    )
    assert attributes["data-confirm-action"] == unescape(button)


@pytest.mark.parametrize("destructive", DESTRUCTIVE, indirect=True)
def test_each_destructive_form_gives_the_page_dialog_what_the_server_page_asks(owner, destructive):
    assert_page_dialog_asks_as_the_server_page(logged_in(owner), destructive)


def test_the_revoke_form_gives_the_page_dialog_what_the_server_page_asks(owner, project):
    api_key, _ = make_key(KeyKind.SECRET, project=project, actor=owner)
    case = Destructive(
        f"{api_url(project)}{api_key.id}/revoke/",
        f"Revoke “\u2068{api_key.name}\u2069” ({api_key.prefix}…)?",
        lambda: False,
        api_url(project),
    )
    assert_page_dialog_asks_as_the_server_page(logged_in(owner), case)
