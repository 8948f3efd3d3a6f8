from django.urls import path

from apps.accounts import account_views, views

urlpatterns = [
    path("signup/", views.signup_page, name="signup"),
    path("login/", views.login_page, name="login"),
    path("login/2fa/", views.login_second_factor_page, name="login-2fa"),
    path("logout/", views.logout_page, name="logout"),
    path("reset/", views.password_reset_page, name="password-reset"),
    # before the link's pattern: "set-password" is not a token
    path("reset/set-password/", views.password_reset_set_page, name="password-reset-set"),
    path("reset/<str:token>/", views.password_reset_confirm_page, name="password-reset-confirm"),
    path("account/", account_views.account, name="account"),
    path("account/email/confirm/", account_views.confirm_email, name="account-email-confirm"),
    path("account/email/send/", account_views.send_email_code, name="account-email-send"),
    path("account/password/", account_views.change_password, name="account-password"),
    path("account/2fa/setup/", account_views.start_two_factor, name="account-2fa-setup"),
    path("account/2fa/enable/", account_views.enable_two_factor, name="account-2fa-enable"),
    path("account/2fa/disable/", account_views.disable_two_factor, name="account-2fa-disable"),
    path("account/delete/", account_views.delete_account, name="account-delete"),
    path(
        "account/sessions/others/end/",
        account_views.end_other_sessions,
        name="account-sessions-end-others",
    ),
    path(
        "account/sessions/<uuid:session_id>/end/",
        account_views.end_session,
        name="account-session-end",
    ),
]
