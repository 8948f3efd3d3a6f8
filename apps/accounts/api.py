"""`/v1/me` and the `/v1/auth/*` endpoints."""

from __future__ import annotations

from rest_framework.response import Response

from apps.orgs.models import Membership
from sigsentry.api import ApiView


def me_payload(principal) -> dict:
    if principal.key is not None:
        key = principal.key
        return {
            "type": "key",
            "key": {
                "id": str(key.id),
                "name": key.name,
                "prefix": key.prefix,
                "type": key.type,
                "scope": key.scope,
                "permissions": list(key.permissions),
                "legacy": key.legacy,
            },
            "organization": {"id": str(key.organization_id), "name": key.organization.name},
            "project": (
                {"id": str(key.project_id), "name": key.project.name} if key.project_id else None
            ),
        }
    user = principal.user
    memberships = (
        Membership.objects.filter(user=user)
        .select_related("organization")
        .order_by("organization__name", "organization__id")
    )
    return {
        "type": "user",
        "user": {"id": str(user.id), "email": user.email},
        "memberships": [
            {
                "organization": {"id": str(m.organization_id), "name": m.organization.name},
                "role": m.role,
            }
            for m in memberships
        ],
    }


class MeView(ApiView):
    def get(self, request):
        return Response(me_payload(self.principal))
