"""Fixtures of the /v1 authentication tests: a foreign project, the ids the paths name,
and credentials of every kind."""

from __future__ import annotations

import pytest

from apps.analyses.models import Analysis
from apps.apikeys.keyformat import KeyKind
from apps.projects import services as config_services
from tests.apikeys.auth_helpers import Credential
from tests.factories import OrganizationFactory, ProjectFactory, make_key


@pytest.fixture
def foreign_project(db):
    """A project of an organization nobody in `organization` belongs to."""
    return ProjectFactory(organization=OrganizationFactory(name="Rival"), name="Rival app")


@pytest.fixture
def world(project):
    """One analysis, log source and channel in `project`: the ids the paths name."""
    analysis = Analysis.objects.create(
        project=project,
        title="our incident",
        input="our private logs",
        created_by_type="user",
        created_by_label="someone@example.com",
    )
    log_source = config_services.create_log_source(project=project, name="our-source", kind="http")
    channel = config_services.create_channel(
        project=project, name="our-channel", kind="slack", target="#ours"
    )
    return {"analysis": analysis.id, "log_source": log_source.id, "channel": channel.id}


@pytest.fixture
def credential(request, project, organization, user_token):
    """`credential(who, permissions=None)`: a credential for `project`.

    `who` is pub, secret, org (keys; org keys name the project in X-Project-Id)
    or a role (a JWT of a user with that role, X-Project-Id set).
    """

    def make(who: str, permissions=None) -> Credential:
        if who == "pub":
            return Credential(make_key(KeyKind.PUBLIC, project=project)[1], None)
        if who == "secret":
            key = make_key(KeyKind.SECRET, project=project, permissions=permissions)[1]
            return Credential(key, None)
        if who == "org":
            key = make_key(KeyKind.ORGANIZATION, organization=organization, permissions=permissions)
            return Credential(key[1], str(project.id))
        return Credential(user_token(request.getfixturevalue(who)), str(project.id))

    return make
