"""What one project's callers may store as analyses (`services.CREATE_BUDGET`, and
`REPLY_BUDGET` for follow-ups and feedback): an hour and a UTC day per project, whatever the
credential, since an SDK key is public. Nothing refused is stored or counted.

The limits are lowered with override_settings and the throttle's clock is held at the first
second of a day (`throttle_clock`), so no window boundary passes mid-test.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import override_settings

from apps.analyses import services
from apps.analyses.models import Analysis, Feedback, FollowUp
from apps.apikeys.keyformat import KeyKind
from core.principal import Principal
from core.sharedredis import redis_client
from tests.analyses.helpers import error_code, send
from tests.factories import make_key
from tests.reliability.helpers import unreachable_redis

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("throttle_clock")]

HOUR, DAY = 3600, 86400


def budget(create: tuple[int, int] = (1000, 5000), reply: tuple[int, int] = (1000, 5000)):
    """override_settings with the two budgets' (hour, day) limits lowered."""
    return override_settings(
        THROTTLE_RATES=settings.THROTTLE_RATES
        | {
            "analysis_create_project": (create[0], HOUR),
            "analysis_create_project_day": (create[1], DAY),
            "analysis_reply_project": (reply[0], HOUR),
            "analysis_reply_project_day": (reply[1], DAY),
        }
    )


@pytest.fixture
def sdk_key(project):
    """The plaintext of an `ss_pub_` key of `project`: public, served in web pages."""
    return make_key(KeyKind.PUBLIC, project=project, name="Web")[1]


def create(client, credential, project_id=None, title="Checkout errors"):
    body = {"title": title, "input": "ERROR 500 /checkout\n" * 100}
    return send(
        client, "POST", "/v1/analyses", credential=credential, project_id=project_id, body=body
    )


def assert_refused(response, retry_after: int) -> None:
    assert response.status_code == 429, response.content
    assert response.json()["error"]["code"] == "RATE_LIMITED"
    assert set(response.json()["error"]) >= {"code", "message"}
    assert int(response["Retry-After"]) == retry_after


@budget(create=(2, 100))
def test_past_the_hour_a_creation_is_refused_with_retry_after_and_nothing_stored(
    api_client, sdk_key
):
    assert [create(api_client, sdk_key).status_code for _ in range(2)] == [201, 201]

    assert_refused(create(api_client, sdk_key, title="One more"), HOUR)
    assert Analysis.objects.count() == 2
    assert not Analysis.objects.filter(title="One more").exists()


@budget(create=(2, 100))
def test_the_budget_is_per_project(api_client, sdk_key, other_project):
    for _ in range(2):
        create(api_client, sdk_key)
    assert_refused(create(api_client, sdk_key), HOUR)

    other_key = make_key(KeyKind.PUBLIC, project=other_project)[1]
    assert create(api_client, other_key).status_code == 201
    assert Analysis.objects.filter(project=other_project).count() == 1


@budget(create=(4, 100))
def test_every_kind_of_credential_shares_its_projects_budget(
    api_client, project, sdk_key, secret_key, member, user_token
):
    """The project is what is filled: one budget whatever the credential."""
    token = user_token(member)
    org_key = make_key(KeyKind.ORGANIZATION, organization=project.organization)[1]
    assert create(api_client, sdk_key).status_code == 201
    assert create(api_client, token, project_id=project.id).status_code == 201
    assert create(api_client, secret_key[1]).status_code == 201
    assert create(api_client, org_key, project_id=project.id).status_code == 201

    assert_refused(create(api_client, token, project_id=project.id), HOUR)
    assert_refused(create(api_client, sdk_key), HOUR)
    assert_refused(create(api_client, org_key, project_id=project.id), HOUR)
    assert Analysis.objects.filter(project=project).count() == 4


@budget(create=(2, 3))
def test_a_creation_the_hour_refuses_takes_none_of_the_days_budget(
    api_client, sdk_key, throttle_clock
):
    for _ in range(2):
        create(api_client, sdk_key)
    for _ in range(3):  # refused by the hour: counted in no window
        assert_refused(create(api_client, sdk_key), HOUR)

    throttle_clock.advance(HOUR)

    assert create(api_client, sdk_key).status_code == 201  # the day's third
    assert_refused(create(api_client, sdk_key), DAY - HOUR)  # the day's wait, the longer
    assert Analysis.objects.count() == 3


@budget(create=(1, 100))
def test_a_body_refused_as_invalid_is_not_counted(api_client, sdk_key):
    refused = send(api_client, "POST", "/v1/analyses", credential=sdk_key, body={"title": "t"})
    assert error_code(refused) == "VALIDATION_ERROR"
    assert create(api_client, sdk_key).status_code == 201
    assert_refused(create(api_client, sdk_key), HOUR)


@budget(reply=(3, 100))
def test_follow_ups_and_feedback_share_a_budget_per_project_apart_from_creations(
    api_client, project, other_project, sdk_key, make_analysis
):
    """Each analysis holds 100 of each, but any old analysis of the project takes more:
    bounded per analysis is not bounded per project."""
    first, second = make_analysis(project), make_analysis(project)

    def reply(analysis, kind, key=sdk_key):
        body = {"question": "Why?"} if kind == "follow-ups" else {"rating": "up"}
        path = f"/v1/analyses/{analysis.id}/{kind}"
        return send(api_client, "POST", path, credential=key, body=body)

    assert reply(first, "follow-ups").status_code == 201
    assert reply(second, "feedback").status_code == 201
    assert reply(second, "follow-ups").status_code == 201
    assert_refused(reply(first, "feedback"), HOUR)
    assert_refused(reply(second, "follow-ups"), HOUR)
    assert FollowUp.objects.count() == 2 and Feedback.objects.count() == 1

    assert create(api_client, sdk_key).status_code == 201  # creations have their own
    other_key = make_key(KeyKind.PUBLIC, project=other_project)[1]
    assert reply(make_analysis(other_project), "follow-ups", other_key).status_code == 201


@budget(reply=(2, 100))
def test_a_follow_up_refused_by_a_full_analysis_is_given_back(
    api_client, sdk_key, project, make_analysis, monkeypatch
):
    monkeypatch.setattr(services, "MAX_FOLLOW_UPS", 1)
    analysis = make_analysis(project)
    path = f"/v1/analyses/{analysis.id}"

    def post(kind, body):
        return send(api_client, "POST", f"{path}/{kind}", credential=sdk_key, body=body)

    assert post("follow-ups", {"question": "Why?"}).status_code == 201
    assert error_code(post("follow-ups", {"question": "And?"})) == "VALIDATION_ERROR"
    assert post("feedback", {"rating": "up"}).status_code == 201  # the second stored
    assert_refused(post("feedback", {"rating": "down"}), HOUR)


@budget(create=(1, 100))
@pytest.mark.parametrize("credential", ["sdk key", "user"])
def test_an_unreachable_redis_means_no_budget_not_an_error(
    api_client, project, sdk_key, member, user_token, caplog, credential
):
    token = user_token(member)

    def one():
        if credential == "sdk key":
            return create(api_client, sdk_key)
        return create(api_client, token, project_id=project.id)

    with override_settings(**unreachable_redis()):
        replies = [one() for _ in range(3)]
    assert [r.status_code for r in replies] == [201] * 3
    assert Analysis.objects.count() == 3
    assert "unavailable" in caplog.text  # logged (and counted: core.failopen)
    # Nothing was counted meanwhile; with the cache back, the budget holds again.
    assert one().status_code == 201
    assert_refused(one(), HOUR)


def test_a_users_creation_is_skipped_by_the_budget_only_when_redis_is_down(
    api_client, project, member, user_token, caplog
):
    """A session touches Redis first here: the budget's own step gives up, by name."""
    with budget(create=(1, 1)), override_settings(**unreachable_redis()):
        create(api_client, user_token(member), project_id=project.id)
    assert "throttle cache unavailable; analysis_create_project not counted" in caplog.text


@pytest.mark.skipif(not settings.REDIS_URL, reason="counted in this process's memory")
def test_both_windows_are_counted_in_one_redis_round_trip(project, owner, monkeypatch):
    principal = Principal(user=owner)
    services.create_analysis(principal=principal, project=project, title="t", input="i")
    client = redis_client()
    sent = []
    real = client.execute_command

    def recording(*args, **options):
        sent.append(args[0])
        return real(*args, **options)

    monkeypatch.setattr(client, "execute_command", recording)
    services.create_analysis(principal=principal, project=project, title="t", input="i")
    assert sent == ["EVALSHA"]


def test_the_document_says_each_write_is_throttled_per_project(api_client):
    document = api_client.get("/v1/schema", {"format": "json"}).json()
    for path in ("/v1/analyses", "/v1/analyses/{id}/follow-ups", "/v1/analyses/{id}/feedback"):
        operation = document["paths"][path]["post"]
        assert "Throttled per project" in operation["description"], path
        assert "RATE_LIMITED" in operation["responses"]["429"]["description"]
