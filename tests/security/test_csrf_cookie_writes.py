"""Every unsafe method of a cookie-authenticated /v1 request needs the CSRF token: not
only POST, but DELETE, PATCH and PUT too, which a cross-site page can send with the
session cookies by `fetch` (a CORS preflight stops only the reading of the answer on a
misconfigured origin list, and a same-site subdomain needs none)."""

from __future__ import annotations

import pytest

from apps.audit.models import AuditEvent
from apps.orgs.models import Membership
from core.permissions import Role
from tests.orgs.helpers import cookie_client, error_code, send, with_csrf

pytestmark = pytest.mark.django_db

#: What each method asks of the member's row, and what it answers when it is let through.
CHANGES = {
    "DELETE": (None, 204),
    "PATCH": ({"role": "viewer"}, 200),
}


def member_url(organization, user) -> str:
    return f"/v1/organizations/{organization.id}/members/{user.id}"


@pytest.mark.parametrize("method", sorted(CHANGES))
def test_a_cookie_session_changes_a_member_only_with_the_csrf_token(
    method, owner, member, organization
):
    """Found by a mutation audit: DELETE and PATCH (and PUT) added to the methods the cookie
    session's CSRF check exempts went unnoticed, since only POST was tested. A page on
    another site could then remove or demote an organization's members with a manager's
    session cookies. Without `X-CSRFToken` (the CSRF cookie alone, as a cross-site request
    carries it) the change is refused and the membership stays; with it, it is made."""
    client = cookie_client(owner)
    header = with_csrf(client)
    body, status = CHANGES[method]
    url = member_url(organization, member)

    refused = send(client, method, url, body)

    assert refused.status_code == 403, refused.content
    assert error_code(refused) == "PERMISSION_DENIED"
    assert "CSRF" in refused.json()["error"]["message"]
    assert Membership.objects.filter(
        organization=organization, user=member, role=Role.MEMBER
    ).exists()
    assert not AuditEvent.objects.filter(action__startswith="member.").exists()

    accepted = send(client, method, url, body, **header)

    assert accepted.status_code == status, accepted.content
    remaining = Membership.objects.filter(organization=organization, user=member)
    assert list(remaining.values_list("role", flat=True)) == ([] if body is None else ["viewer"])


def test_a_cookie_put_without_the_csrf_token_is_refused_before_its_method(
    owner, member, organization
):
    """Found by a mutation audit: PUT exempted from the cookie session's CSRF check went
    unnoticed (no /v1 endpoint takes PUT today, so the exemption would wait for the first
    one). The CSRF check comes first: a tokenless PUT is a CSRF refusal, not 405, and only
    with the token does the request reach the view to be told the method is not allowed."""
    client = cookie_client(owner)
    header = with_csrf(client)
    url = member_url(organization, member)

    refused = send(client, "PUT", url, {"role": "viewer"})
    with_token = send(client, "PUT", url, {"role": "viewer"}, **header)

    assert refused.status_code == 403, refused.content
    assert "CSRF" in refused.json()["error"]["message"]
    assert with_token.status_code == 405, with_token.content
    assert Membership.objects.get(organization=organization, user=member).role == Role.MEMBER
