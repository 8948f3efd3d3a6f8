"""Listing webhooks shows the caller's organization's only, on the API and on the page."""

from __future__ import annotations

import pytest

from apps.orgs.models import Membership
from tests import factories
from tests.orgs.helpers import user_client
from tests.pages import html, logged_in

pytestmark = pytest.mark.django_db

OURS = "https://8.8.8.8/hooks/acme"
THEIRS = "https://8.8.4.4/hooks/elsewhere-only"


def test_an_owner_lists_their_organizations_webhooks_and_never_anothers(
    owner, organization, outsider
):
    """Found by a mutation audit: `webhooks_of` filtered by nothing (its
    `organization_id=` dropped) and no test noticed. Every organization's webhook would then
    appear in every owner's list, on the API and on the dashboard page: another tenant's
    endpoint URLs (which often carry a token in their path or query) and ids, which the
    delete and enable actions take. Here another organization's webhook appears in neither."""
    ours = factories.make_webhook(organization, owner, OURS).webhook
    elsewhere = Membership.objects.get(user=outsider).organization
    theirs = factories.make_webhook(elsewhere, outsider, THEIRS).webhook

    response = user_client(owner).get(f"/v1/organizations/{organization.id}/webhooks")
    page = html(logged_in(owner).get(f"/orgs/{organization.id}/webhooks/"))

    assert response.status_code == 200
    listed = response.json()["results"]
    assert [(w["id"], w["url"]) for w in listed] == [(str(ours.id), OURS)]
    assert str(theirs.id) not in response.content.decode()
    assert THEIRS not in response.content.decode()
    assert OURS in page
    assert str(theirs.id) not in page
    assert "8.8.4.4" not in page and "elsewhere-only" not in page
