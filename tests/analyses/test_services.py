"""Analyses services and selectors: who created what, and scoping to one project."""

from __future__ import annotations

import uuid

import pytest

from apps.analyses import selectors, services
from apps.analyses.models import Analysis
from apps.apikeys.keyformat import KeyKind
from core.errors import NotFound
from core.principal import Principal
from tests.factories import make_key

pytestmark = pytest.mark.django_db


def test_analysis_created_with_a_key_is_credited_to_the_key_prefix(project):
    api_key, _ = make_key(KeyKind.PUBLIC, project=project)
    analysis = services.create_analysis(
        principal=Principal(key=api_key), project=project, title="t", input="i"
    )
    assert analysis.status == Analysis.Status.QUEUED
    assert (analysis.created_by_key, analysis.created_by_user) == (api_key, None)
    assert analysis.created_by == {"type": "key", "prefix": api_key.prefix}


def test_an_analysis_outlives_its_authors_account_without_their_address(project, member):
    """As keys and webhooks keep no address behind a NULL creator (core.creators): the
    deleted person's address is personal data the project no longer needs (GDPR Art. 17)."""
    analysis = services.create_analysis(
        principal=Principal(user=member), project=project, title="t", input="i"
    )
    follow_up = services.create_follow_up(
        principal=Principal(user=member), analysis=analysis, question="q"
    )
    member.delete()
    analysis.refresh_from_db()
    follow_up.refresh_from_db()
    assert analysis.created_by_user is None
    assert analysis.created_by == {"type": "user", "email": ""}
    assert follow_up.created_by == {"type": "user", "email": ""}


def test_follow_ups_and_feedback_record_their_own_author(project, member):
    api_key, _ = make_key(KeyKind.SECRET, project=project)
    analysis = services.create_analysis(
        principal=Principal(user=member), project=project, title="t", input="i"
    )
    follow_up = services.create_follow_up(
        principal=Principal(key=api_key), analysis=analysis, question="why?"
    )
    feedback = services.create_feedback(
        principal=Principal(user=member), analysis=analysis, rating="down"
    )
    assert follow_up.created_by == {"type": "key", "prefix": api_key.prefix}
    assert (feedback.rating, feedback.comment) == ("down", "")
    assert feedback.created_by == {"type": "user", "email": member.email}
    assert list(analysis.follow_ups.all()) == [follow_up]
    assert list(analysis.feedback.all()) == [feedback]


def test_selectors_never_reach_into_another_project(project, other_project, member):
    mine = services.create_analysis(
        principal=Principal(user=member), project=project, title="mine", input="i"
    )
    theirs = services.create_analysis(
        principal=Principal(user=member), project=other_project, title="theirs", input="i"
    )
    assert list(selectors.analyses_of(project=project)) == [mine]
    assert selectors.analysis_in_project(project=project, analysis_id=str(mine.id)) == mine
    for missing in (theirs.id, uuid.uuid4(), "nope", None):
        with pytest.raises(NotFound):
            selectors.analysis_in_project(project=project, analysis_id=missing)
