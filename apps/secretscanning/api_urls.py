from django.urls import path

from apps.secretscanning import api

urlpatterns = [
    path("secret-scanning/github", api.GitHubSecretScanningView.as_view(), name="api-github-scan"),
]
