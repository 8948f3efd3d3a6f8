"""A key's and a webhook's creator is shown as the organization knew them.

A privacy audit: `createdBy.email` was read live through the creator's account, so
once a member had left, an address an operator later gave that account showed on
the old organization's keys, pages and webhook payloads. The address is kept as it
was at creation, and forgotten with the account.
"""

from __future__ import annotations

import pytest

from apps.accounts.models import User
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from apps.apikeys.representation import key_json
from apps.orgs.models import Membership
from apps.webhooks.models import Webhook
from core.permissions import Role
from tests.factories import MembershipFactory, make_key
from tests.orgs.helpers import user_client
from tests.pages import logged_in

pytestmark = pytest.mark.django_db

LATER_ADDRESS = "alice-at-her-next-job@othercorp.example"


@pytest.fixture
def leaver(organization) -> User:
    return MembershipFactory(organization=organization, role=Role.ADMIN).user


def test_a_member_who_left_keeps_the_address_the_organization_knew(
    owner, leaver, organization, project, make_webhook
):
    known = leaver.email
    api_key, _ = make_key(KeyKind.SECRET, project=project, actor=leaver, name="Leaver's")
    webhook = make_webhook("http://127.0.0.1:9/hook", actor=leaver).webhook
    Membership.objects.filter(user=leaver, organization=organization).delete()
    User.objects.filter(pk=leaver.pk).update(email=LATER_ADDRESS)  # an operator, later

    listed = user_client(owner).get(f"/v1/projects/{project.id}/api-keys").json()["results"]
    assert [k["createdBy"] for k in listed] == [{"id": str(leaver.pk), "email": known}]
    api_key.refresh_from_db()
    assert key_json(api_key, api_key.created_at)["createdBy"]["email"] == known  # webhooks'
    for page in (
        f"/projects/{project.id}/api-keys/",
        f"/projects/{project.id}/api-keys/{api_key.id}/",
        f"/orgs/{organization.id}/webhooks/",
    ):
        response = logged_in(owner).get(page)
        assert response.status_code == 200, page
        body = response.content.decode()
        assert LATER_ADDRESS not in body and known.split("@")[0] in body, page
    assert Webhook.objects.get(pk=webhook.pk).created_by_email == known


def test_a_deleted_account_leaves_no_address_behind(owner, leaver, project, make_webhook):
    api_key, _ = make_key(KeyKind.SECRET, project=project, actor=leaver, name="Leaver's")
    webhook = make_webhook("http://127.0.0.1:9/hook", actor=leaver).webhook

    User.objects.get(pk=leaver.pk).delete()

    api_key.refresh_from_db()
    assert (api_key.created_by_id, api_key.created_by_email) == (None, "")
    assert key_json(api_key, api_key.created_at)["createdBy"] is None
    assert Webhook.objects.filter(pk=webhook.pk, created_by_email="").exists()
    assert not ApiKey.objects.filter(created_by_email=leaver.email).exists()
