from django.urls import path

from apps.accounts import api

urlpatterns = [
    path("auth/signup", api.SignupView.as_view(), name="api-auth-signup"),
    path("auth/login", api.LoginView.as_view(), name="api-auth-login"),
    path("auth/refresh", api.RefreshView.as_view(), name="api-auth-refresh"),
    path("auth/logout", api.LogoutView.as_view(), name="api-auth-logout"),
    path("me", api.MeView.as_view(), name="api-me"),
]
