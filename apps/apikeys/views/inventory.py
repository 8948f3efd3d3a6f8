"""A key collection's inventory as a CSV file, for compliance reviews: every key, revoked
and expired ones too, newest first, as the API lists them (`key_json`): never a digest or
a key, which no page or answer holds either. Any member of the organization, as anyone who
may see the list (SPEC §4.3); 404 for outsiders. Not an audit event: it holds what the
page and `GET …/api-keys` show any member, who may read them without a trace too.

Sent by the page's form (POST, with its CSRF token): each file takes a place in the hour's
downloads, which a GET from another site's link must not spend. A GET or HEAD only leads
to the key page.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from apps.apikeys.keyformat import KeyKind
from apps.apikeys.representation import key_json
from apps.apikeys.views.page import page_collection
from core import export
from core.decorators import dashboard_page

#: The CSV's columns: fields of the API's key object (`createdBy` is its email).
COLUMNS = (
    "id",
    "name",
    "prefix",
    "type",
    "scope",
    "legacy",
    "permissions",
    "status",
    "createdAt",
    "createdBy",
    "expiresAt",
    "lastUsedAt",
    "lastUsedIp",
    "revokedAt",
)
_FILE_NAMES = {
    KeyKind.PUBLIC: "sdk-keys",
    KeyKind.SECRET: "api-keys",
    KeyKind.ORGANIZATION: "org-api-keys",
}


@dashboard_page
@require_http_methods(["GET", "HEAD", "POST"])
def key_collection_export(
    request: HttpRequest, kind: KeyKind, project_id=None, org_id=None
) -> HttpResponse:
    """The file, for a POST; a GET or HEAD, after the same checks, leads to the key page
    (nothing read, nor counted against the hour's downloads)."""
    collection = page_collection(request, kind, project_id, org_id)
    if request.method != "POST":
        return redirect(collection.url)
    now = timezone.now()
    owner = collection.project or collection.organization
    name = f"sigsentry-{_FILE_NAMES[kind]}-{owner.id}-{export.stamp(now)}.csv"
    refused = export.refused_download(request)
    if refused is not None:
        return refused
    keys = export.read_ahead(export.newest_first(collection.keys()))
    content = export.csv_lines(COLUMNS, (_row(key_json(key, now)) for key in keys))
    return export.download(content, filename=name, content_type=export.CSV_TYPE)


def _row(key: dict[str, Any]) -> list[Any]:
    created_by = key["createdBy"] or {}
    return [
        key["id"],
        key["name"],
        key["prefix"],
        key["type"],
        key["scope"],
        "true" if key["legacy"] else "false",
        " ".join(key["permissions"]),
        key["status"],
        key["createdAt"],
        created_by.get("email"),
        key["expiresAt"],
        key["lastUsedAt"],
        key["lastUsedIp"],
        key["revokedAt"],
    ]
