"""Clients and assertions for the management API tests (orgs, keys, audit, auth)."""

from __future__ import annotations

from typing import Any

from rest_framework.test import APIClient

from apps.accounts import services as account_services
from apps.accounts.cookies import ACCESS_COOKIE, REFRESH_COOKIE
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from apps.orgs.models import Membership
from tests.factories import make_legacy_key

#: Every caller a role-matrix test tries, as fixture names of tests/conftest.py.
ROLES = ("owner", "admin", "member", "viewer", "outsider")
MANAGERS = frozenset({"owner", "admin"})
#: A CSRF secret in Django's accepted shape (32 alphanumerics), sent as cookie and header.
CSRF_TOKEN = "Csrf0123456789abcdefghijklmnopqr"
#: A legacy (Traceback) key, as operators import them.
LEGACY_KEY = "tb_LegacyKey0123456789abcdef"
#: One character of each class a display name may not hold, by class (core.validation).
UNSHOWN_IN_NAMES = {
    "c0-control": "\x01",
    "tab": "\t",
    "line-feed": "\n",
    "carriage-return": "\r",
    "del": "\x7f",
    "c1-control": "\x9b",
    "line-separator": "\u2028",
    "bidi-embedding": "\u202a",
    "bidi-override": "\u202e",
    "bidi-isolate": "\u2066",
    "bidi-pop-isolate": "\u2069",
    "zero-width-space": "\u200b",
    "soft-hyphen": "\xad",
    "word-joiner": "\u2060",
    "byte-order-mark": "\ufeff",
    "hangul-filler": "\u3164",
    # Unicode's other default-ignorable characters: drawn as nothing
    "combining-grapheme-joiner": "\u034f",
    "mongolian-variation-selector": "\u180b",
    "deprecated-format": "\u206a",
    "interlinear-annotation": "\ufff9",
    "musical-format": "\U0001d173",
    "tag-letter": "\U000e0041",
    "language-tag": "\U000e0001",
    "variation-selector-after-a-letter": "\ufe0f",
}


def error_code(response) -> str:
    return response.json()["error"]["code"]


def error_fields(response) -> dict[str, Any]:
    """`details.fields` of a VALIDATION_ERROR response (fails on any other response)."""
    assert error_code(response) == "VALIDATION_ERROR", response.json()
    return response.json()["error"]["details"]["fields"]


def bearer_client(credential: str, *, enforce_csrf_checks: bool = False) -> APIClient:
    client = APIClient(enforce_csrf_checks=enforce_csrf_checks)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {credential}")
    return client


def user_client(user, *, enforce_csrf_checks: bool = False) -> APIClient:
    """A client with a fresh session's access JWT in `Authorization: Bearer`."""
    pair = account_services.start_session(user)
    return bearer_client(pair.access, enforce_csrf_checks=enforce_csrf_checks)


def cookie_client(user) -> APIClient:
    """A browser-like client: the session in the HttpOnly cookies, CSRF checks enforced."""
    pair = account_services.start_session(user)
    client = APIClient(enforce_csrf_checks=True)
    client.cookies[ACCESS_COOKIE] = pair.access
    client.cookies[REFRESH_COOKIE] = pair.refresh
    return client


def with_csrf(client: APIClient) -> dict[str, str]:
    """Give the client the CSRF cookie; returns the matching header for unsafe requests."""
    client.cookies["csrftoken"] = CSRF_TOKEN
    return {"HTTP_X_CSRFTOKEN": CSRF_TOKEN}


def send(client: APIClient, method: str, path: str, body: Any = None, **headers):
    call = getattr(client, method.lower())
    if body is None:
        return call(path, **headers)
    return call(path, body, format="json", **headers)


def collection_url(kind: KeyKind, project) -> str:
    if kind is KeyKind.PUBLIC:
        return f"/v1/projects/{project.id}/sdk-keys"
    if kind is KeyKind.SECRET:
        return f"/v1/projects/{project.id}/api-keys"
    return f"/v1/organizations/{project.organization_id}/api-keys"


def key_url(kind: KeyKind, project, api_key, action: str = "") -> str:
    key_id = api_key if isinstance(api_key, str) else api_key.id
    return f"{collection_url(kind, project)}/{key_id}" + (f"/{action}" if action else "")


def legacy_key(project, plaintext: str = LEGACY_KEY) -> ApiKey:
    """A legacy key row as the import command writes it (digest and prefix only)."""
    return make_legacy_key(project, plaintext=plaintext, name="Old CI")[0]


def membership_inline_data(organization, roles: dict) -> dict:
    """The admin's organization change form as drawn, every membership's role as in `roles`
    (user id -> role) or as it is; no project rows."""
    memberships = list(Membership.objects.filter(organization=organization).order_by("created_at"))
    data = {
        "name": organization.name,
        "memberships-TOTAL_FORMS": str(len(memberships)),
        "memberships-INITIAL_FORMS": str(len(memberships)),
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
        "projects-TOTAL_FORMS": "0",
        "projects-INITIAL_FORMS": "0",
        "projects-MIN_NUM_FORMS": "0",
        "projects-MAX_NUM_FORMS": "1000",
    }
    for index, membership in enumerate(memberships):
        data[f"memberships-{index}-id"] = str(membership.pk)
        data[f"memberships-{index}-organization"] = str(organization.pk)
        data[f"memberships-{index}-user"] = str(membership.user_id)
        data[f"memberships-{index}-role"] = roles.get(membership.user_id, membership.role)
    return data
