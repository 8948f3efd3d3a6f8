from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("v1/", include("sigsentry.api_urls")),  # first: tried on every API request
    path("admin/", admin.site.urls),
    path("", include("apps.accounts.urls")),
    path("", include("apps.orgs.urls")),
    path("", include("apps.apikeys.urls")),
    path("", include("apps.analyses.urls")),
    path("", include("apps.webhooks.urls")),
    path("", include("apps.invitations.urls")),
]

handler400 = "core.views.bad_request"
handler403 = "core.views.permission_denied"
handler404 = "core.views.page_not_found"
handler500 = "core.views.server_error"
