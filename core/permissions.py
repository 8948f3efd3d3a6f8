from rest_framework.permissions import BasePermission


class IsAuthenticatedPrincipal(BasePermission):
    """Every `/v1` endpoint needs a credential unless its view says otherwise."""

    def has_permission(self, request, view) -> bool:
        return request.user is not None and request.user.is_authenticated
