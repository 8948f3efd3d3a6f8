"""The three key collections (SPEC §4.3) and the public leak report (§4.7)."""

from django.urls import path

from apps.apikeys import api, usage_api
from apps.apikeys.keyformat import KeyKind

_COLLECTIONS = (
    ("projects/<str:project_id>/sdk-keys", KeyKind.PUBLIC, "api-sdk-keys"),
    ("projects/<str:project_id>/api-keys", KeyKind.SECRET, "api-project-keys"),
    ("organizations/<str:org_id>/api-keys", KeyKind.ORGANIZATION, "api-org-keys"),
)

urlpatterns = [
    path("leaked-keys", api.LeakedKeysView.as_view(), name="api-leaked-keys"),
]
for base, kind, name in _COLLECTIONS:
    urlpatterns += [
        path(base, api.KeysView.as_view(kind=kind), name=name),
        path(f"{base}/<str:key_id>", api.KeyView.as_view(kind=kind), name=f"{name}-detail"),
        path(
            f"{base}/<str:key_id>/revoke",
            api.KeyRevokeView.as_view(kind=kind),
            name=f"{name}-revoke",
        ),
        path(f"{base}/<str:key_id>/roll", api.KeyRollView.as_view(kind=kind), name=f"{name}-roll"),
    ]

# Usage per key (SPEC §4.9).
urlpatterns += [
    path(
        f"{base}/<str:key_id>/usage",
        usage_api.KeyUsageView.as_view(kind=kind),
        name=f"{name}-usage",
    )
    for base, kind, name, *_views in _COLLECTIONS
]
