"""Account security endpoints (SPEC §4.13): password reset, two-factor, sessions.

Thin views over apps.accounts.password_reset, .twofactor and .services:

* the reset endpoints and the login's second step need no credential (as login);
* two-factor set-up and the session list act on the caller's own account, so
  they take a person's session (a JWT or the dashboard cookie with the CSRF
  token); API keys have no account and get 403.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from apps.accounts import password_reset, services, twofactor
from apps.accounts.api import (
    CredentialCheckView,
    CredentialFreeView,
    TokenPairSerializer,
    token_pair_json,
)
from apps.accounts.cookies import set_session_cookies
from apps.accounts.models import AuthSession
from apps.accounts.selectors import open_sessions_of
from core.api import ApiView, field_names, json_object, paginate
from core.errors import PermissionDenied
from core.openapi import (
    OR_WRONG_PASSWORD,
    PAGE_PARAMETERS,
    THROTTLED,
    WRONG_PASSWORD_OR_CODE,
    error_responses,
    paginated,
)
from core.openapi_schema import IdPathAutoSchema
from core.times import iso

RESET_ACCEPTED = "If an account uses this email, a link to reset its password is on its way."


class AccountView(ApiView):
    """The caller's own account: a person's session only (API keys → 403 PERMISSION_DENIED)."""

    #: Documented with the JWT and cookie schemes only (apps.apikeys.schema).
    session_only = True
    schema = IdPathAutoSchema()

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if self.principal.key is not None:
            raise PermissionDenied(
                PermissionDenied.SESSION, "API keys have no account; use a person's session."
            )


def session_json(session: AuthSession, current: AuthSession | None) -> dict:
    return {
        "id": str(session.id),
        "createdAt": iso(session.created_at),
        "lastSeenAt": iso(session.last_seen_at or session.created_at),
        "ip": session.ip,
        "userAgent": session.user_agent,
        "current": current is not None and session.id == current.id,
    }


# OpenAPI shapes of the request and response bodies.


class PasswordResetInputSerializer(serializers.Serializer):
    email = serializers.EmailField()


class AcceptedSerializer(serializers.Serializer):
    message = serializers.CharField()


class PasswordResetConfirmInputSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="From the emailed link `/reset/<token>/`.")
    password = serializers.CharField(min_length=10)


class SecondFactorInputSerializer(serializers.Serializer):
    mfaToken = serializers.CharField(help_text="From the login answer; valid 5 minutes, once.")
    code = serializers.CharField(
        help_text="The 6-digit code of the authenticator app, or an unused recovery code."
    )


class TwoFactorSetupSerializer(serializers.Serializer):
    secret = serializers.CharField(help_text="Base32, for typing into an authenticator app.")
    otpauthUrl = serializers.CharField(help_text="`otpauth://totp/...`, usually shown as a QR.")


class CodeInputSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="The 6-digit code the authenticator app shows now.")


class RecoveryCodesSerializer(serializers.Serializer):
    recoveryCodes = serializers.ListField(
        child=serializers.CharField(),
        min_length=10,
        max_length=10,
        help_text="Shown this once; each logs in once instead of a code. Stored hashed.",
    )


class PasswordInputSerializer(serializers.Serializer):
    password = serializers.CharField(help_text="The account's current password.")


class SessionSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    createdAt = serializers.DateTimeField()
    lastSeenAt = serializers.DateTimeField(help_text="Updated at most once a minute.")
    ip = serializers.IPAddressField(allow_null=True, help_text="Where it was last seen from.")
    userAgent = serializers.CharField(allow_blank=True)
    current = serializers.BooleanField(help_text="The session making this request.")


# Password reset -----------------------------------------------------------------------


class PasswordResetView(CredentialFreeView):
    @extend_schema(
        operation_id="auth_password_reset",
        summary="Email a password reset link",
        description=(
            "Always 202, whether or not an account uses the email: only an existing, active "
            "account gets the email, with a link to `/reset/<token>/` (single use, valid "
            "1 hour). Opened in a browser, the link keeps its token in an HttpOnly cookie of "
            "the reset pages and redirects to `/reset/set-password/`, so the token leaves "
            "the address bar. Throttled per client and per address."
        ),
        tags=["auth"],
        request=PasswordResetInputSerializer,
        responses={
            202: AcceptedSerializer,
            **error_responses(400, 429, described={429: THROTTLED}),
        },
    )
    def post(self, request):
        body = json_object(request, field_names(PasswordResetInputSerializer))
        password_reset.request_password_reset(email=body.get("email"), request=request)
        return Response({"message": RESET_ACCEPTED}, status=202)


class PasswordResetConfirmView(CredentialCheckView):
    @extend_schema(
        operation_id="auth_password_reset_confirm",
        summary="Set a new password with a reset token",
        description=(
            "Every session of the user ends, and an email says the password changed. A "
            "used, expired or forged token is 400 VALIDATION_ERROR on `token` and changes "
            "nothing."
        ),
        tags=["auth"],
        request=PasswordResetConfirmInputSerializer,
        responses={
            204: OpenApiResponse(description="Password changed."),
            **error_responses(400, 429, described={429: THROTTLED}),
        },
    )
    def post(self, request):
        body = json_object(request, field_names(PasswordResetConfirmInputSerializer))
        password_reset.confirm_password_reset(
            token=body.get("token"), password=body.get("password"), request=request
        )
        return Response(status=204)


# Two-factor ------------------------------------------------------------------------------


class LoginSecondFactorView(CredentialCheckView):
    @extend_schema(
        operation_id="auth_login_2fa",
        summary="Finish a two-factor login",
        description=(
            "With the `mfaToken` of the login answer and a TOTP code (current step ±1, never "
            "the same code twice) or an unused recovery code. A wrong code, or an expired "
            "or used mfaToken, is 401 INVALID_CREDENTIALS; wrong codes are throttled like "
            "wrong passwords. Also sets the session cookies."
        ),
        tags=["auth"],
        request=SecondFactorInputSerializer,
        responses={
            200: TokenPairSerializer,
            **error_responses(
                400, 401, 429, described={401: WRONG_PASSWORD_OR_CODE, 429: THROTTLED}
            ),
        },
    )
    def post(self, request):
        body = json_object(request, field_names(SecondFactorInputSerializer))
        pair = services.login_with_second_factor(
            mfa_token=body.get("mfaToken"), code=body.get("code"), request=request
        )
        response = Response(token_pair_json(pair))
        set_session_cookies(response, pair)
        return response


class TwoFactorSetupView(AccountView):
    @extend_schema(
        operation_id="auth_2fa_setup",
        summary="Start two-factor set-up",
        description=(
            "A new TOTP secret for an authenticator app (RFC 6238, 6 digits, 30 s). Two-factor "
            "is on only after POST /v1/auth/2fa/enable with a first code, within 15 minutes. "
            "Refused (400) while two-factor is on."
        ),
        tags=["auth"],
        request=None,
        responses={200: TwoFactorSetupSerializer, **error_responses(400, 401, 403)},
    )
    def post(self, request):
        setup = twofactor.start_setup(user=self.principal.user)
        return Response({"secret": setup.secret, "otpauthUrl": setup.otpauth_url})


class TwoFactorEnableView(AccountView):
    @extend_schema(
        operation_id="auth_2fa_enable",
        summary="Turn two-factor on",
        description=(
            "With a code from the app just set up, within 15 minutes of the set-up (later: 400 "
            "on `code`, start again). Answers the 10 recovery codes, the only time they are "
            "shown. A wrong code is 400 VALIDATION_ERROR on `code`, throttled."
        ),
        tags=["auth"],
        request=CodeInputSerializer,
        responses={200: RecoveryCodesSerializer, **error_responses(400, 401, 403, 429)},
    )
    def post(self, request):
        body = json_object(request, field_names(CodeInputSerializer))
        codes = twofactor.enable(user=self.principal.user, code=body.get("code"), request=request)
        return Response({"recoveryCodes": codes})


class TwoFactorDisableView(AccountView):
    @extend_schema(
        operation_id="auth_2fa_disable",
        summary="Turn two-factor off",
        description=(
            "Needs the current password: a wrong one is 401 INVALID_CREDENTIALS, throttled "
            "like logins. The authenticator secret and the recovery codes are deleted."
        ),
        tags=["auth"],
        request=PasswordInputSerializer,
        responses={
            204: OpenApiResponse(description="Two-factor is off."),
            **error_responses(
                400,
                401,
                403,
                429,
                described={401: OR_WRONG_PASSWORD, 429: THROTTLED},
            ),
        },
    )
    def post(self, request):
        body = json_object(request, field_names(PasswordInputSerializer))
        twofactor.disable(user=self.principal.user, password=body.get("password"), request=request)
        return Response(status=204)


# Sessions -----------------------------------------------------------------------------


class SessionsView(AccountView):
    @extend_schema(
        operation_id="auth_sessions_list",
        summary="The caller's open sessions",
        description="Every logged-in browser or client of the caller, newest first.",
        tags=["auth"],
        parameters=PAGE_PARAMETERS,
        responses={
            200: paginated(SessionSerializer, "SessionList"),
            **error_responses(400, 401, 403),
        },
    )
    def get(self, request):
        current = self.principal.session
        return paginate(
            self, open_sessions_of(self.principal.user), lambda s: session_json(s, current)
        )


class SessionEndView(AccountView):
    @extend_schema(
        operation_id="auth_sessions_end",
        summary="End one of the caller's sessions",
        description=(
            "Its tokens are refused from the next request on. Another user's session, an "
            "ended one or an unknown id is 404 NOT_FOUND."
        ),
        tags=["auth"],
        request=None,
        responses={
            204: OpenApiResponse(description="Ended."),
            **error_responses(401, 403, 404),
        },
    )
    def post(self, request, session_id):
        services.end_own_session(user=self.principal.user, session_id=session_id)
        return Response(status=204)
