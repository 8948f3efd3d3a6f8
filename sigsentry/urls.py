from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("v1/", include("sigsentry.api_urls")),  # first: tried on every API request
    path("admin/", admin.site.urls),
    path("", include("apps.accounts.urls")),
    path("", include("apps.orgs.urls")),
    path("", include("apps.projects.urls")),
    path("", include("apps.apikeys.urls")),
    path("", include("apps.audit.urls")),
]

handler400 = "sigsentry.views.bad_request"
handler403 = "sigsentry.views.permission_denied"
handler404 = "sigsentry.views.page_not_found"
handler500 = "sigsentry.views.server_error"
