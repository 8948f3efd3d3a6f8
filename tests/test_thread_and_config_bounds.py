"""Lists answered whole are bounded (found by the DoS audit).

An analysis carries all its follow-ups and feedback (SPEC §4.4) and `GET /v1/config` all the
project's log sources and channels (§4.5): a key could otherwise grow one answer without
end (3,000 follow-ups made every analysis page 30 MB; 9,700 log sources one config answer
101 MB). A full list refuses the next addition with `400 VALIDATION_ERROR` and changes
nothing; concurrent additions wait for each other, so the bound holds exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.analyses import services as analysis_services
from apps.analyses.models import Analysis, Feedback, FollowUp
from apps.apikeys.keyformat import KeyKind
from apps.projects import services as project_services
from apps.projects.models import Channel, LogSource
from tests.factories import make_key
from tests.races import Call, race


@dataclass(frozen=True)
class Bounded:
    name: str
    model: Any
    most: int
    field: str
    body: dict[str, Any]

    def path(self, analysis: Analysis) -> str:
        return {
            "follow-ups": f"/v1/analyses/{analysis.id}/follow-ups",
            "feedback": f"/v1/analyses/{analysis.id}/feedback",
            "log-sources": "/v1/config/log-sources",
            "channels": "/v1/config/channels",
        }[self.name]

    def fill(self, analysis: Analysis, count: int) -> None:
        if self.model in (FollowUp, Feedback):
            extra = {"question": "Why?"} if self.model is FollowUp else {"rating": "up"}
            rows = [
                self.model(analysis=analysis, created_by_type="user", **extra) for _ in range(count)
            ]
        elif self.model is LogSource:
            rows = [
                LogSource(project=analysis.project, name=f"s{n}", kind="http") for n in range(count)
            ]
        else:
            rows = [
                Channel(project=analysis.project, name=f"c{n}", kind="email", target="a@b.example")
                for n in range(count)
            ]
        self.model.objects.bulk_create(rows)

    def count(self, analysis: Analysis) -> int:
        if self.model in (FollowUp, Feedback):
            return self.model.objects.filter(analysis=analysis).count()
        return self.model.objects.filter(project=analysis.project).count()


BOUNDED = [
    Bounded(
        "follow-ups", FollowUp, analysis_services.MAX_FOLLOW_UPS, "question", {"question": "Why?"}
    ),
    Bounded("feedback", Feedback, analysis_services.MAX_FEEDBACK, "rating", {"rating": "down"}),
    Bounded(
        "log-sources",
        LogSource,
        project_services.MAX_LOG_SOURCES,
        "name",
        {"name": "Edge", "kind": "http"},
    ),
    Bounded(
        "channels",
        Channel,
        project_services.MAX_CHANNELS,
        "name",
        {"name": "Ops", "kind": "email", "target": "ops@example.com"},
    ),
]
IDS = [bounded.name for bounded in BOUNDED]


@pytest.fixture
def analysis(project) -> Analysis:
    return Analysis.objects.create(
        project=project, title="Checkout", input="ERROR", created_by_type="user"
    )


def post(bounded: Bounded, analysis: Analysis, plaintext: str):
    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION=f"Bearer {plaintext}", HTTP_X_PROJECT_ID=str(analysis.project_id)
    )
    return client.post(bounded.path(analysis), bounded.body, format="json")


@pytest.mark.django_db
@pytest.mark.parametrize("bounded", BOUNDED, ids=IDS)
def test_a_full_list_refuses_the_next_addition_and_changes_nothing(bounded, analysis, project):
    _key, plaintext = make_key(KeyKind.SECRET, project=project)
    bounded.fill(analysis, bounded.most - 1)

    last = post(bounded, analysis, plaintext)
    refused = post(bounded, analysis, plaintext)

    assert last.status_code == 201, last.json()
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "VALIDATION_ERROR"
    message = refused.json()["error"]["details"]["fields"][bounded.field][0]
    assert message.startswith(f"At most {bounded.most} ")
    assert bounded.count(analysis) == bounded.most


@pytest.mark.django_db
def test_the_bounds_are_per_analysis_and_per_project(analysis, project, other_project):
    _key, plaintext = make_key(KeyKind.SECRET, project=other_project)
    other = Analysis.objects.create(
        project=other_project, title="Other", input="x", created_by_type="user"
    )
    for bounded in BOUNDED:
        bounded.fill(analysis, bounded.most)

        assert post(bounded, other, plaintext).status_code == 201, bounded.name


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("bounded", BOUNDED, ids=IDS)
def test_two_additions_to_a_list_with_room_for_one_add_one(bounded, analysis, project):
    # On SQLite too: with the write lock taken only at the first write, the second addition
    # (having read the count) was refused "database is locked", a 503, as the first committed.
    _key, plaintext = make_key(KeyKind.SECRET, project=project)
    bounded.fill(analysis, bounded.most - 1)
    table = bounded.model._meta.db_table
    first = Call(
        lambda: post(bounded, analysis, plaintext),
        held_after=lambda sql: sql.startswith(f'INSERT INTO "{table}"'),
    )
    second = Call(lambda: post(bounded, analysis, plaintext))

    race(first, second, second_waits=True)

    assert first.error is None and second.error is None, (first.error, second.error)
    assert (first.result.status_code, second.result.status_code) == (201, 400)
    assert bounded.count(analysis) == bounded.most
