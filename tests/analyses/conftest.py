"""Fixtures for the analyses API: a key of the `project` fixture and analyses."""

from __future__ import annotations

import pytest

from apps.analyses.models import Analysis
from apps.apikeys.keyformat import KeyKind
from tests.factories import make_key


@pytest.fixture
def secret_key(project):
    """(ApiKey, plaintext) of an `ss_secret_` key of `project` with all four permissions."""
    return make_key(KeyKind.SECRET, project=project, name="CI")


@pytest.fixture
def make_analysis():
    def make(project, title="Checkout errors", **fields):
        defaults = {"input": "ERROR 500 /checkout", "created_by_type": "user"}
        defaults["created_by_label"] = fields.pop("label", "someone@example.com")
        return Analysis.objects.create(project=project, title=title, **(defaults | fields))

    return make
