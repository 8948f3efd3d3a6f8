"""OPTIONS and the schema's download name (found by an HTTP audit).

* `GET /v1/schema?version=...` wrote the parameter into `Content-Disposition`: a control
  character was a 500 (gunicorn refuses the header), a quote chose the file name of a
  download from this site.
* `OPTIONS /v1/docs` was a 500: DRF's description of a view rendered with a page template.
* OPTIONS answered the view's docstring, written for maintainers, to anyone.
"""

from __future__ import annotations

import pytest

from tests.orgs.helpers import error_code

pytestmark = pytest.mark.django_db

SCHEMA_FILE = 'inline; filename="SigSentry API (1.0.0).json"'


@pytest.mark.parametrize(
    "version", ["%00", "%0a", "%1f", "%7f", "evil.bat%22%3B%20x%3D", "%E2%80%AE", "2.0"]
)
def test_the_schema_download_name_never_takes_the_query(api_client, version):
    response = api_client.get(f"/v1/schema?version={version}")

    assert response.status_code == 200
    assert response["Content-Disposition"] == SCHEMA_FILE
    assert response.json()["info"]["version"] == "1.0.0"


@pytest.mark.parametrize("path", ["/v1/docs", "/v1/docs?script", "/v1/schema"])
def test_options_on_the_document_and_its_page_is_refused_as_json(api_client, path):
    response = api_client.options(path)

    assert response.status_code == 405 and error_code(response) == "METHOD_NOT_ALLOWED"
    assert response["Allow"] == "GET, HEAD"


@pytest.mark.parametrize("path", ["/v1/leaked-keys", "/v1/auth/refresh", "/v1/auth/login"])
def test_options_names_the_methods_but_not_the_views_docstring(api_client, path):
    response = api_client.options(path)

    assert response.status_code == 200
    assert "POST" in response["Allow"]
    body = response.json()
    assert "description" not in body
    assert body["parses"] == ["application/json"]
