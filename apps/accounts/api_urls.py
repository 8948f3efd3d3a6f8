from django.urls import path

from apps.accounts import api, security_api

urlpatterns = [
    path("auth/signup", api.SignupView.as_view(), name="api-auth-signup"),
    path("auth/login", api.LoginView.as_view(), name="api-auth-login"),
    path("auth/login/2fa", security_api.LoginSecondFactorView.as_view(), name="api-auth-login-2fa"),
    path("auth/refresh", api.RefreshView.as_view(), name="api-auth-refresh"),
    path("auth/logout", api.LogoutView.as_view(), name="api-auth-logout"),
    path(
        "auth/password-reset",
        security_api.PasswordResetView.as_view(),
        name="api-auth-password-reset",
    ),
    path(
        "auth/password-reset/confirm",
        security_api.PasswordResetConfirmView.as_view(),
        name="api-auth-password-reset-confirm",
    ),
    path("auth/2fa/setup", security_api.TwoFactorSetupView.as_view(), name="api-auth-2fa-setup"),
    path("auth/2fa/enable", security_api.TwoFactorEnableView.as_view(), name="api-auth-2fa-enable"),
    path(
        "auth/2fa/disable",
        security_api.TwoFactorDisableView.as_view(),
        name="api-auth-2fa-disable",
    ),
    path("auth/sessions", security_api.SessionsView.as_view(), name="api-auth-sessions"),
    path(
        "auth/sessions/<str:session_id>/end",
        security_api.SessionEndView.as_view(),
        name="api-auth-session-end",
    ),
    path("me", api.MeView.as_view(), name="api-me"),
]
