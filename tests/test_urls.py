"""The /v1 URL table: flat, SDK endpoints first, no two patterns matching the same path."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import resolve

from sigsentry import api_urls


def sample_path(route: str) -> str:
    return "/v1/" + re.sub(r"<(?:\w+:)?(\w+)>", r"sample-\1", route)


@pytest.mark.parametrize("pattern", api_urls.urlpatterns, ids=lambda p: str(p.pattern))
def test_each_api_path_reaches_its_own_pattern(pattern):
    """Order only decides speed: a path never matches an earlier pattern by accident."""
    assert resolve(sample_path(str(pattern.pattern))).route == "v1/" + str(pattern.pattern)


@pytest.mark.parametrize("path", ["/v1/analyses", "/v1/analyses/sample-id"])
def test_the_endpoints_keys_call_most_are_tried_first(path):
    """Every pattern tried before the match costs each request (an include that misses, most)."""
    assert len(resolve(path).tried) <= 2


@pytest.mark.django_db
@pytest.mark.parametrize("debug", [False, True], ids=["production", "debug"])
@pytest.mark.parametrize("path", ["/v1/nonexistent", "/v1/analyses/", "/v1/me/x"])
def test_a_v1_path_that_matches_nothing_is_json_with_or_without_debug(settings, path, debug):
    """An integration audit: with DEBUG (`make run`), Django's HTML page answered a typo."""
    settings.DEBUG = debug
    response = Client().get(path, HTTP_AUTHORIZATION="Bearer x")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "NOT_FOUND"
    assert response["X-Request-Id"].startswith("req_")


@pytest.mark.django_db
def test_a_dashboard_path_that_matches_nothing_keeps_its_page(settings):
    settings.DEBUG = True
    response = Client().get("/nonexistent/")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")
