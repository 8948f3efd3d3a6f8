"""CORS for origin-bound SDK keys (SPEC §4.7).

django-cors-headers answers preflights and marks analysis responses as
readable from any origin. This middleware runs after it on the way out and
narrows the answer for keys bound to `allowedOrigins`: such a response echoes
the request's origin only when it is allowed, and carries no
Access-Control-Allow-Origin at all otherwise.
"""

from __future__ import annotations

ACAO = "Access-Control-Allow-Origin"


class KeyOriginCorsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if getattr(request, "sigsentry_origin_denied", False):
            if ACAO in response:
                del response[ACAO]
            return response
        principal = getattr(request, "sigsentry_principal", None)
        key = principal.key if principal is not None else None
        if key is not None and key.allowed_origins and ACAO in response:
            origin = request.META.get("HTTP_ORIGIN", "").lower()
            if origin in key.allowed_origins:
                response[ACAO] = request.META["HTTP_ORIGIN"]
                response.setdefault("Vary", "Origin")
            else:
                del response[ACAO]
        return response
