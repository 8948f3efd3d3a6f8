"""Everything under /v1/. Each app contributes its `api_urls`."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

urlpatterns = [
    path("", include("apps.accounts.api_urls")),
    path("", include("apps.orgs.api_urls")),
    path("", include("apps.apikeys.api_urls")),
    path("", include("apps.analyses.api_urls")),
    path("", include("apps.projects.api_urls")),
    path("", include("apps.audit.api_urls")),
    path("schema", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
]
