"""`/v1/me` and the `/v1/auth/*` endpoints (SPEC §4.1): thin views over apps.accounts.services.

* signup and login answer the token pair in the body and also set it as the
  dashboard's HttpOnly cookies;
* refresh takes `refresh` from the body or, when the body has none, from the
  `ss_refresh` cookie. Only the cookie path needs the CSRF token, and only the
  cookie path answers with new cookies, so a forged cross-site request can
  never plant a session in a browser;
* logout ends the caller's session (Bearer JWT, or the cookie plus CSRF token)
  and clears the cookies.

Every response is `Cache-Control: no-store` (ApiView): most carry tokens.
"""

from __future__ import annotations

from drf_spectacular.utils import (
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
)
from rest_framework import serializers
from rest_framework.response import Response

from apps.accounts import services
from apps.accounts.cookies import (
    REFRESH_COOKIE,
    clear_session_cookies,
    enforce_csrf,
    set_session_cookies,
)
from apps.accounts.tokens import TokenPair
from apps.orgs.selectors import membership_refs
from apps.orgs.serializers import UserRefSerializer
from core import throttling
from core.api import ApiView, field_names, json_object
from core.errors import AuthError, PermissionDenied, RateLimited, ValidationFailed
from core.net import client_ip
from core.openapi import THROTTLED, WRONG_PASSWORD_OR_CODE, WRONG_REFRESH_TOKEN, error_responses
from core.permissions import ALL_PERMISSIONS, Role
from core.principal import AUTH_DECISION, AuthDecision, Principal
from core.times import iso


def me_payload(principal: Principal) -> dict:
    """Who is calling (SPEC §4.1): the user and their memberships, or the key."""
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
            "organization": {"id": str(key.organization_id), "name": key.organization_name},
            "project": (
                {"id": str(key.project_id), "name": key.project_name} if key.project_id else None
            ),
        }
    user = principal.user
    return {
        "type": "user",
        "user": {"id": str(user.id), "email": user.email},
        "memberships": [
            {
                "organization": {"id": str(m.organization_id), "name": m.organization_name},
                "role": m.role,
            }
            for m in membership_refs(user.id)
        ],
    }


def token_pair_json(pair: TokenPair) -> dict[str, str]:
    return {"access": pair.access, "refresh": pair.refresh}


class CredentialFreeView(ApiView):
    """Needs no credential; a stale Authorization header or cookie is ignored.

    A body is parsed only when it is declared `application/json` (the API's negotiation,
    DRF's own parser choice): an HTML form on another site can post `text/plain` that
    happens to be valid JSON, but it cannot send `application/json` without a CORS
    preflight, which `/v1/auth` never grants. So no other site can sign a browser in to
    an account of its choosing (login CSRF).
    """

    authentication_classes = []
    permission_classes = []


class CredentialCheckView(CredentialFreeView):
    """A credential-free endpoint that checks one itself (a password, a refresh token, an
    mfaToken and its code, a reset token): its refusals (401, 429) are the request's
    decision, in its access line (`auth_outcome`) and `sigsentry_auth_decisions_total`, as
    a `/v1` credential's are. Without it credential stuffing showed only as bare 401 lines
    (found by the observability audit). Its successes are the sessions they open."""

    def handle_exception(self, exc):
        if isinstance(exc, AuthError | RateLimited):
            self.request.META.setdefault(AUTH_DECISION, AuthDecision(exc.code))
        return super().handle_exception(exc)


# OpenAPI shapes of the request and response bodies.


class OrganizationRefSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField(help_text="Access JWT (24 hours).")
    refresh = serializers.CharField(help_text="Refresh JWT; single use (rotated on refresh).")


class SignupInputSerializer(serializers.Serializer):
    """The schema of the signup body: what the view enforces, as far as a schema can say."""

    email = serializers.EmailField(max_length=254)
    password = serializers.RegexField(
        r"\D",
        min_length=10,
        help_text=(
            "At least 10 characters, not all digits, not a common password and not too "
            "similar to the email (Django's password validators)."
        ),
    )
    organizationName = serializers.RegexField(
        r"\S", max_length=100, help_text="1 to 100 characters once stripped."
    )


class SignupResponseSerializer(TokenPairSerializer):
    user = UserRefSerializer()
    organization = OrganizationRefSerializer()


class LoginInputSerializer(serializers.Serializer):
    email = serializers.EmailField()
    password = serializers.CharField()


class RefreshInputSerializer(serializers.Serializer):
    refresh = serializers.CharField(
        required=False,
        help_text=(
            "The refresh token. When omitted, the `ss_refresh` cookie is used; the request "
            "must then carry the CSRF token (`X-CSRFToken`) and the new pair is also set "
            "as cookies."
        ),
    )


class LogoutInputSerializer(serializers.Serializer):
    refresh = serializers.CharField(
        required=False,
        help_text="Optional; if it belongs to another of the caller's sessions, that one ends too.",
    )


class MembershipRefSerializer(serializers.Serializer):
    organization = OrganizationRefSerializer()
    role = serializers.ChoiceField(choices=Role.choices)


class MeUserSerializer(serializers.Serializer):
    type = serializers.CharField(help_text='Always "user".')
    user = UserRefSerializer()
    memberships = MembershipRefSerializer(many=True)


class MeKeyDetailSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    prefix = serializers.CharField()
    # The key object's enums (an SDK audit: plain text here, `KeyTypeEnum` there); its
    # components themselves (`core.openapi.one_enum_per_value_set`: the labels differ).
    type = serializers.ChoiceField(choices=["public", "secret"])
    scope = serializers.ChoiceField(choices=["project", "organization"])
    permissions = serializers.ListField(child=serializers.ChoiceField(choices=ALL_PERMISSIONS))
    legacy = serializers.BooleanField()


class ProjectRefSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()


class MeKeySerializer(serializers.Serializer):
    type = serializers.CharField(help_text='Always "key".')
    key = MeKeyDetailSerializer()
    organization = OrganizationRefSerializer()
    project = ProjectRefSerializer(allow_null=True, help_text="Null for organization keys.")


class MeView(ApiView):
    @extend_schema(
        operation_id="me",
        summary="Who is calling",
        tags=["auth"],
        responses={
            200: PolymorphicProxySerializer(
                component_name="Me",
                serializers={"user": MeUserSerializer, "key": MeKeySerializer},
                resource_type_field_name="type",
            ),
            **error_responses(401, 403, 429),
        },
    )
    def get(self, request):
        return Response(me_payload(self.principal))


class SignupView(CredentialFreeView):
    @extend_schema(
        operation_id="auth_signup",
        summary="Create an account and its organization",
        description="The new user owns the new organization. Also sets the session cookies.",
        tags=["auth"],
        request=SignupInputSerializer,
        responses={
            201: SignupResponseSerializer,
            **error_responses(400, 429, described={429: THROTTLED}),
        },
    )
    def post(self, request):
        body = json_object(request, field_names(SignupInputSerializer))
        result = services.signup(
            email=body.get("email"),
            password=body.get("password"),
            organization_name=body.get("organizationName"),
            request=request,
        )
        response = Response(
            {
                "user": {"id": str(result.user.id), "email": result.user.email},
                "organization": {
                    "id": str(result.organization.id),
                    "name": result.organization.name,
                },
                **token_pair_json(result.tokens),
            },
            status=201,
        )
        set_session_cookies(response, result.tokens)
        return response


class MfaRequiredSerializer(serializers.Serializer):
    mfaRequired = serializers.BooleanField(help_text="Always true.")
    mfaToken = serializers.CharField(
        help_text="Send it to /v1/auth/login/2fa with a code, within 5 minutes; works once."
    )


class LoginView(CredentialCheckView):
    @extend_schema(
        operation_id="auth_login",
        summary="Log in",
        description=(
            "A wrong password and an unknown email get the same 401 INVALID_CREDENTIALS. "
            "Also sets the session cookies. Throttled per account and per client. With "
            "two-factor on, the answer is `{mfaRequired: true, mfaToken}` instead of tokens: "
            "finish with POST /v1/auth/login/2fa."
        ),
        tags=["auth"],
        request=LoginInputSerializer,
        responses={
            200: PolymorphicProxySerializer(
                component_name="LoginResult",
                serializers=[TokenPairSerializer, MfaRequiredSerializer],
                resource_type_field_name=None,
            ),
            **error_responses(
                400, 401, 429, described={401: WRONG_PASSWORD_OR_CODE, 429: THROTTLED}
            ),
        },
    )
    def post(self, request):
        body = json_object(request, field_names(LoginInputSerializer))
        result = services.login(
            email=body.get("email"), password=body.get("password"), request=request
        )
        if isinstance(result, services.MfaChallenge):
            return Response({"mfaRequired": True, "mfaToken": result.mfa_token})
        response = Response(token_pair_json(result))
        set_session_cookies(response, result)
        return response


class RefreshView(CredentialCheckView):
    """Rotate the pair named in the body, or in the cookie (then with the CSRF token).

    Cookie mode returns `{accessExpiresAt}` instead of the tokens. A failed
    refresh leaves the cookies alone: when two tabs race, the loser's
    401 must not wipe the cookies the winner's response has just set.
    """

    @extend_schema(
        operation_id="auth_refresh",
        summary="Rotate the token pair",
        description=(
            "The refresh token presented dies; reusing it later ends the whole session. "
            "A session never outlives JWT_SESSION_MAX_AGE after login."
        ),
        tags=["auth"],
        request=RefreshInputSerializer,
        responses={
            200: TokenPairSerializer,
            **error_responses(
                400, 401, 403, 429, described={401: WRONG_REFRESH_TOKEN, 429: THROTTLED}
            ),
        },
    )
    def post(self, request):
        throttling.enforce("refresh_ip", client_ip(request))
        body = json_object(request, field_names(RefreshInputSerializer))
        token = body.get("refresh")
        from_cookie = False
        if token is None:
            token = request.COOKIES.get(REFRESH_COOKIE)
            if not token:
                raise ValidationFailed({"refresh": ["A refresh token is required."]})
            from_cookie = True
            enforce_csrf(request)
        elif not isinstance(token, str) or not token:
            raise ValidationFailed({"refresh": ["Must be a refresh token."]})
        pair = services.refresh(refresh_token=token)
        if not from_cookie:
            return Response(token_pair_json(pair))
        # The cookies are HttpOnly so that page scripts never hold a token: the
        # cookie route answers with the new expiry only.
        response = Response({"accessExpiresAt": iso(pair.access_expires_at)})
        set_session_cookies(response, pair)
        return response


class LogoutView(ApiView):
    #: A person's session only: API keys have none (documented in the OpenAPI security).
    session_only = True

    @extend_schema(
        operation_id="auth_logout",
        summary="End the session",
        description=(
            "The session's access and refresh tokens are rejected from the next request "
            "on. Clears the session cookies."
        ),
        tags=["auth"],
        request=LogoutInputSerializer,
        responses={
            204: OpenApiResponse(description="Logged out."),
            **error_responses(400, 401, 403),
        },
    )
    def post(self, request):
        if self.principal.key is not None:
            raise PermissionDenied(
                PermissionDenied.SESSION, "API keys have no session to end; revoke the key."
            )
        body = json_object(request, field_names(LogoutInputSerializer))
        refresh_token = body.get("refresh")
        if refresh_token is not None and not isinstance(refresh_token, str):
            raise ValidationFailed({"refresh": ["Must be a refresh token."]})
        services.logout(session=self.principal.session, refresh_token=refresh_token)
        response = Response(status=204)
        clear_session_cookies(response)
        return response
