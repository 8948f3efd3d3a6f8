"""What every dashboard page's template reads: the sidebar and the session's lifetime."""

from __future__ import annotations

from django.utils.functional import SimpleLazyObject

from apps.accounts.tokens import ACCESS_LIFETIME
from apps.orgs.context_processors import dashboard_nav


def sidebar(request) -> dict:
    if getattr(request, "principal", None) is None:
        return {}
    return {
        "nav": SimpleLazyObject(lambda: dashboard_nav(request)),
        "session_lifetime_seconds": int(ACCESS_LIFETIME.total_seconds()),
    }
