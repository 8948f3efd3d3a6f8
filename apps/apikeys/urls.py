"""Key pages. Actions on one key mirror the API: `<collection>/<keyId>/<action>/`."""

from django.urls import path

from apps.apikeys import usage_views, views
from apps.apikeys.keyformat import KeyKind

SDK = {"kind": KeyKind.PUBLIC}
SECRET = {"kind": KeyKind.SECRET}
ORG = {"kind": KeyKind.ORGANIZATION}

_SDK = "projects/<uuid:project_id>/sdk-keys/"
_SECRET = "projects/<uuid:project_id>/api-keys/"
_ORG = "orgs/<uuid:org_id>/api-keys/"
_KEY = "<uuid:key_id>/"

urlpatterns = [
    path(_SDK, views.key_collection, SDK, name="sdk-keys"),
    path(_SDK + "export.csv", views.key_collection_export, SDK, name="sdk-keys-csv"),
    path(_SDK + _KEY, usage_views.key_detail, SDK, name="sdk-key"),
    path(_SDK + _KEY + "revoke/", views.key_revoke, SDK, name="sdk-key-revoke"),
    path(_SDK + _KEY + "roll/", views.key_roll, SDK, name="sdk-key-roll"),
    path(_SDK + _KEY + "origins/", views.key_origins, SDK, name="sdk-key-origins"),
    path(_SDK + _KEY + "limits/", views.key_limits, SDK, name="sdk-key-limits"),
    path(_SECRET, views.key_collection, SECRET, name="api-keys"),
    path(_SECRET + "export.csv", views.key_collection_export, SECRET, name="api-keys-csv"),
    path(_SECRET + _KEY, usage_views.key_detail, SECRET, name="api-key"),
    path(_SECRET + _KEY + "revoke/", views.key_revoke, SECRET, name="api-key-revoke"),
    path(_SECRET + _KEY + "roll/", views.key_roll, SECRET, name="api-key-roll"),
    path(_SECRET + _KEY + "replace/", views.key_replace, SECRET, name="api-key-replace"),
    path(_SECRET + _KEY + "limits/", views.key_limits, SECRET, name="api-key-limits"),
    path(_ORG, views.key_collection, ORG, name="org-api-keys"),
    path(_ORG + "export.csv", views.key_collection_export, ORG, name="org-api-keys-csv"),
    path(_ORG + _KEY, usage_views.key_detail, ORG, name="org-api-key"),
    path(_ORG + _KEY + "revoke/", views.key_revoke, ORG, name="org-api-key-revoke"),
    path(_ORG + _KEY + "roll/", views.key_roll, ORG, name="org-api-key-roll"),
    path(_ORG + _KEY + "limits/", views.key_limits, ORG, name="org-api-key-limits"),
    path(_ORG + "policy/", views.key_policy, name="org-api-key-policy"),
]
