"""The /v1 URL table: flat, SDK endpoints first, no two patterns matching the same path."""

from __future__ import annotations

import re

import pytest
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
