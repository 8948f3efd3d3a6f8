"""What the key app does around a `/v1` response, from the request's `AuthDecision`.

* `KeyOriginCorsMiddleware` (SPEC §4.7): django-cors-headers answers preflights
  and marks analysis responses as readable from any origin. This runs after it on
  the way out and narrows the answer for keys bound to `allowedOrigins`: such a
  response echoes the request's origin only when it is allowed, and carries no
  Access-Control-Allow-Origin at all otherwise.
* `KeyUseMiddleware`: every request that presented a known key is counted
  (`apps.apikeys.gate`: requests and refusals, no database write), a rate-limited
  key's response carries `X-RateLimit-*`; a request accepted with a key records
  `lastUsedAt` with its IP and user agent (at most one write per key per minute,
  never failing the request), and a legacy key's response carries the RFC 9745
  `Deprecation` and RFC 8594 `Sunset` headers (also when its IP list or origins refuse it:
  the key works, from elsewhere).
"""

from __future__ import annotations

from email.utils import format_datetime

from django.conf import settings

from apps.apikeys.gate.steps import RATE_LIMIT, record_use_counts
from apps.apikeys.services import record_key_use
from apps.apikeys.usage.flush import maybe_flush
from apps.orgs.scoped_api import PROJECT_ID
from core.errors import IpNotAllowed, OriginNotAllowed
from core.net import client_ip
from core.principal import AUTH_DECISION

ACAO = "Access-Control-Allow-Origin"
#: Refusals of a key that still works, by its own guardrails (SPEC §4.10): a legacy key's
#: answer carries its Deprecation and Sunset all the same (SPEC §2.3, "while they work").
GUARDRAIL_REFUSALS = frozenset({IpNotAllowed.code, OriginNotAllowed.code})


class KeyOriginCorsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        decision = request.META.get(AUTH_DECISION)
        if decision is None or decision.key is None or ACAO not in response:
            return response
        allowed_origins = decision.key.allowed_origins
        if decision.outcome == OriginNotAllowed.code:
            del response[ACAO]
        elif allowed_origins:
            origin = request.META.get("HTTP_ORIGIN", "")
            if origin.lower() in allowed_origins:
                response[ACAO] = origin
                response.setdefault("Vary", "Origin")
            else:
                del response[ACAO]
        return response


def legacy_headers() -> dict[str, str]:
    """RFC 9745 Deprecation and RFC 8594 Sunset headers for legacy-key responses."""
    return {
        "Deprecation": f"@{int(settings.LEGACY_KEYS_DEPRECATED_AT.timestamp())}",
        "Sunset": format_datetime(settings.LEGACY_KEYS_SUNSET_AT, usegmt=True),
    }


class KeyUseMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        decision = request.META.get(AUTH_DECISION)
        record_use_counts(request, refused=decision is None or decision.outcome != "ok")
        if decision is None or decision.key is None:
            return response
        key = decision.key
        limit_state = request.META.get(RATE_LIMIT)
        if limit_state is not None:
            for name, value in limit_state.headers().items():
                response[name] = value
        if key.legacy and (decision.accepted or decision.outcome in GUARDRAIL_REFUSALS):
            for name, value in legacy_headers().items():
                response[name] = value
        if decision.accepted:
            record_key_use(
                key,
                request.META.get(PROJECT_ID),
                ip=client_ip(request),
                user_agent=request.META.get("HTTP_USER_AGENT"),
            )
        maybe_flush()
        return response
