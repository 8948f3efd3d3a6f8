"""A key's limit and counts at their places on the request path.

The limit's check at its step of SPEC §4.10's order (`KeyRateLimit`, a DRF throttle),
and after the response the request's count on its key (`record_use_counts`, called by
`KeyUseMiddleware`).
"""

from __future__ import annotations

from rest_framework.throttling import BaseThrottle

from apps.apikeys.gate import batch, window
from apps.apikeys.gate.window import LimitState
from core.net import client_ip
from core.principal import AUTH_DECISION
from core.sharedredis import redis_client

#: The `request.META` key of the rate-limit state (for the X-RateLimit-* headers).
RATE_LIMIT = "sigsentry.rate_limit"


def decision_key(request):
    """The key a request was accepted or refused with (after its lookup), or None."""
    decision = request.META.get(AUTH_DECISION)
    return None if decision is None else decision.key


class KeyRateLimit(BaseThrottle):
    """DRF throttle: a key's own rate limit, at its place in SPEC §4.10's order.

    DRF runs throttles after authentication and `check_permissions`, where a
    project-scoped view resolves and checks the project, and before the view's
    permission check. The request is counted after the response, like any other.
    """

    state: LimitState | None = None

    def allow_request(self, request, view) -> bool:
        key = decision_key(request)
        limit = window.key_limit(key)
        if limit is None:
            return True
        state = window.check_limit(str(key.id), limit)
        if state is None:
            return True
        request.META[RATE_LIMIT] = self.state = state
        return state.allowed

    def wait(self) -> float | None:
        return None if self.state is None else self.state.retry_after


class RefusedKeyWindow:
    """A rate-limited key refused by authentication (revoked, expired, origin, IP): its
    window, read without using it for the X-RateLimit-* headers, in the round trip that
    counts the failure (`core.throttling.Along`). When the read does not happen there (no
    client IP to count, Redis failing, the script not loaded), it happens after the
    response as for any refusal."""

    def __init__(self, request, key_id: str, limit: tuple[int, int]) -> None:
        self.request, self.key_id, self.limit = request, key_id, limit

    def queue(self, pipe) -> None:
        keys = window.window_keys(self.key_id)
        args = window.limit_args(self.limit, peek=True)
        pipe.evalsha(window.limit_script(redis_client()).sha, len(keys), *keys, *args)

    def answer(self, replies: list) -> None:
        if not isinstance(replies[0], Exception):
            self.request.META[RATE_LIMIT] = window.limit_state(self.limit[0], replies[0])


def refused_key_window(request, key) -> RefusedKeyWindow | None:
    """The window to read along the failure's count for a refused rate-limited key."""
    limit = window.key_limit(key)
    if limit is None or redis_client() is None:
        return None
    return RefusedKeyWindow(request, str(key.id), limit)


def record_use_counts(request, refused: bool) -> None:
    """After the response: count the request on its key. A rate-limited key refused before
    the limit's step reads its window without using it, for the X-RateLimit-* headers."""
    key = decision_key(request)
    if key is None:
        return
    limit = window.key_limit(key)
    if limit is not None and RATE_LIMIT not in request.META:
        # not read yet (refused before the limit's step); None when Redis did not answer,
        # in this read or at the limit's step (then not waited for again: core.failopen)
        state = window.check_limit(str(key.id), limit, peek=True)
        if state is None:
            return
        request.META[RATE_LIMIT] = state
    batch.count_use(str(key.id), client_ip(request), requests=1, refused=int(refused))
