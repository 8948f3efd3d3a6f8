"""The analyses API (SPEC §4.4): shapes, pagination, validation, scoping to the project."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.analyses.models import Analysis, Feedback, FollowUp
from tests.analyses.helpers import error_code, send, validation_fields

pytestmark = pytest.mark.django_db


class TestCreate:
    def test_key_creates_a_queued_analysis_credited_to_its_prefix(
        self, api_client, project, secret_key
    ):
        api_key, plaintext = secret_key
        response = send(
            api_client,
            "POST",
            "/v1/analyses",
            credential=plaintext,
            body={"title": "Checkout errors", "input": "ERROR 500 /checkout\n"},
        )
        assert response.status_code == 201
        body = response.json()
        analysis = Analysis.objects.get()
        assert body == {
            "id": str(analysis.id),
            "projectId": str(project.id),
            "title": "Checkout errors",
            "input": "ERROR 500 /checkout\n",
            "status": "queued",
            "createdAt": analysis.created_at.isoformat().replace("+00:00", "Z"),
            "createdBy": {"type": "key", "prefix": api_key.prefix},
            "followUps": [],
            "feedback": [],
        }
        assert analysis.created_by_key == api_key

    def test_user_creates_an_analysis_credited_to_their_email(
        self, api_client, project, member, user_token
    ):
        response = send(
            api_client,
            "POST",
            "/v1/analyses",
            credential=user_token(member),
            project_id=project.id,
            body={"title": "t", "input": "i"},
        )
        assert response.status_code == 201
        assert response.json()["createdBy"] == {"type": "user", "email": member.email}
        assert Analysis.objects.get().created_by_user == member

    def test_title_is_trimmed_and_input_is_kept_verbatim(self, api_client, secret_key):
        response = send(
            api_client,
            "POST",
            "/v1/analyses",
            credential=secret_key[1],
            body={"title": "  padded  ", "input": "  line one\n\tline two  "},
        )
        assert response.status_code == 201
        assert response.json()["title"] == "padded"
        assert response.json()["input"] == "  line one\n\tline two  "

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"input": "x"}, "title"),
            ({"title": "t"}, "input"),
            ({"title": "", "input": "x"}, "title"),
            ({"title": "   ", "input": "x"}, "title"),
            ({"title": "t" * 201, "input": "x"}, "title"),
            ({"title": "t", "input": ""}, "input"),
            ({"title": "t", "input": "x" * 100_001}, "input"),
            ({"title": 123, "input": "x"}, "title"),
            ({"title": True, "input": "x"}, "title"),
            ({"title": None, "input": "x"}, "title"),
            ({"title": ["t"], "input": "x"}, "title"),
            ({"title": {"t": 1}, "input": "x"}, "title"),
            ({"title": "t", "input": 42}, "input"),
            ({"title": "nul \x00 byte", "input": "x"}, "title"),
            ({"title": "rev\u202eersed", "input": "x"}, "title"),  # shown in another order
            ({"title": "two\nlines", "input": "x"}, "title"),
            ({"titel": "t", "input": "x"}, "titel"),  # misspelled: named, not dropped
        ],
    )
    def test_invalid_body_is_a_validation_error_naming_the_field(
        self, api_client, secret_key, body, field
    ):
        response = send(api_client, "POST", "/v1/analyses", credential=secret_key[1], body=body)
        assert response.status_code == 400
        assert list(validation_fields(response)) == [field]
        assert not Analysis.objects.exists()

    def test_lone_surrogate_escape_is_a_validation_error(self, api_client, secret_key):
        response = api_client.post(
            "/v1/analyses",
            b'{"title": "t", "input": "lone \\ud800 surrogate"}',
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {secret_key[1]}",
        )
        assert response.status_code == 400
        assert list(validation_fields(response)) == ["input"]

    def test_longest_title_and_input_are_accepted(self, api_client, secret_key):
        body = {"title": "t" * 200, "input": "x" * 100_000}
        response = send(api_client, "POST", "/v1/analyses", credential=secret_key[1], body=body)
        assert response.status_code == 201
        assert Analysis.objects.get().input == "x" * 100_000

    @pytest.mark.parametrize("body", [[], ["title", "input"], "text", 7])
    def test_body_that_is_not_an_object_is_a_validation_error(self, api_client, secret_key, body):
        response = send(api_client, "POST", "/v1/analyses", credential=secret_key[1], body=body)
        assert response.status_code == 400
        assert validation_fields(response) == {"body": ["Send a JSON object."]}  # as key bodies

    @pytest.mark.parametrize(
        "raw",
        [
            b"{",
            b'{"title": "t", "input": NaN}',
            b"\xff\xfe",
            b"[" * 5000 + b"]" * 5000,
            b'{"title": "t", "input": "' + b"x" * (300 * 1024) + b'"}',
        ],
        ids=["truncated", "nan", "not-utf8", "deeply-nested", "over-the-upload-limit"],
    )
    def test_unreadable_json_is_a_validation_error(self, api_client, secret_key, raw):
        response = api_client.post(
            "/v1/analyses",
            raw,
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {secret_key[1]}",
        )
        assert response.status_code == 400
        assert error_code(response) == "VALIDATION_ERROR"


class TestList:
    def test_lists_the_projects_analyses_newest_first(
        self, api_client, project, other_project, secret_key, make_analysis
    ):
        now = timezone.now()
        older = make_analysis(project, "older", created_at=now - timedelta(hours=2))
        newer = make_analysis(project, "newer", created_at=now - timedelta(hours=1))
        make_analysis(other_project, "elsewhere")
        response = send(api_client, "GET", "/v1/analyses", credential=secret_key[1])
        assert response.status_code == 200
        body = response.json()
        assert [a["id"] for a in body["results"]] == [str(newer.id), str(older.id)]
        assert body["next"] is None

    def test_pages_follow_the_next_cursor_without_gaps_or_repeats(
        self, api_client, project, secret_key, make_analysis
    ):
        now = timezone.now()
        created = [
            make_analysis(project, f"a{i}", created_at=now - timedelta(minutes=i)) for i in range(5)
        ]
        seen, url = [], "/v1/analyses?limit=2"
        while url:
            response = send(api_client, "GET", url, credential=secret_key[1])
            assert response.status_code == 200
            page = response.json()
            assert len(page["results"]) <= 2
            seen += [a["id"] for a in page["results"]]
            url = page["next"]
        assert seen == [str(a.id) for a in created]

    def test_query_count_does_not_grow_with_the_number_of_analyses(
        self, api_client, project, secret_key, make_analysis
    ):
        def add_analyses(count):
            for _ in range(count):
                analysis = make_analysis(project)
                FollowUp.objects.create(
                    analysis=analysis, question="why?", created_by_type="user", created_by_label="u"
                )
                Feedback.objects.create(
                    analysis=analysis, rating="up", created_by_type="user", created_by_label="u"
                )

        def queries_for_list():
            send(api_client, "GET", "/v1/analyses", credential=secret_key[1])  # warm-up
            with CaptureQueriesContext(connection) as ctx:
                response = send(api_client, "GET", "/v1/analyses", credential=secret_key[1])
            assert response.status_code == 200
            return len(ctx.captured_queries), len(response.json()["results"])

        add_analyses(2)
        few = queries_for_list()
        add_analyses(8)
        many = queries_for_list()
        assert (few[1], many[1]) == (2, 10)
        # The key lookup, the page, its follow-ups and its feedback.
        assert few[0] == many[0] == 4

    @pytest.mark.parametrize(
        "query",
        [
            "limit=0",
            "limit=101",
            "limit=ten",
            "limit=%C2%B2",  # "²": a digit to str.isdigit, not to int()
            "cursor=bogus",
            "cursor=cD1nYXJiYWdl",  # base64 of "p=garbage": decodes, holds no time
            "cursor=cD0yMDI3LTEzLTQ1VDAwOjAwOjAw",  # "p=2027-13-45T00:00:00"
            "cursor=",  # says nothing: no link of ours is the first page's
            "cursor=%21%21%21%21",  # "!!!!": base64 of nothing
            "cursor=%00",
            "cursor=eD0x",  # "x=1": no field of a cursor
        ],
    )
    def test_bad_paging_parameters_are_validation_errors(self, api_client, secret_key, query):
        response = send(api_client, "GET", f"/v1/analyses?{query}", credential=secret_key[1])
        assert response.status_code == 400
        assert error_code(response) == "VALIDATION_ERROR"

    def test_limit_of_100_is_accepted(self, api_client, secret_key):
        response = send(api_client, "GET", "/v1/analyses?limit=100", credential=secret_key[1])
        assert response.status_code == 200
        assert response.json() == {"results": [], "next": None}


class TestDetail:
    def test_shows_follow_ups_and_feedback_oldest_first(
        self, api_client, project, secret_key, make_analysis
    ):
        analysis = make_analysis(project)
        now = timezone.now()
        second = FollowUp.objects.create(
            analysis=analysis,
            question="second",
            created_at=now,
            created_by_type="key",
            created_by_label="ss_secret_abcdefgh",
        )
        first = FollowUp.objects.create(
            analysis=analysis,
            question="first",
            created_at=now - timedelta(minutes=1),
            created_by_type="user",
            created_by_label="a@example.com",
        )
        feedback = Feedback.objects.create(
            analysis=analysis,
            rating="down",
            comment="wrong root cause",
            created_by_type="user",
            created_by_label="a@example.com",
        )
        response = send(api_client, "GET", f"/v1/analyses/{analysis.id}", credential=secret_key[1])
        assert response.status_code == 200
        body = response.json()
        assert [f["id"] for f in body["followUps"]] == [str(first.id), str(second.id)]
        assert body["followUps"][1] == {
            "id": str(second.id),
            "question": "second",
            "createdAt": second.created_at.isoformat().replace("+00:00", "Z"),
            "createdBy": {"type": "key", "prefix": "ss_secret_abcdefgh"},
        }
        assert body["feedback"] == [
            {
                "id": str(feedback.id),
                "rating": "down",
                "comment": "wrong root cause",
                "createdAt": feedback.created_at.isoformat().replace("+00:00", "Z"),
                "createdBy": {"type": "user", "email": "a@example.com"},
            }
        ]

    @pytest.mark.parametrize("suffix", ["", "/follow-ups", "/feedback"])
    def test_analysis_of_another_project_is_not_found(
        self, api_client, other_project, secret_key, make_analysis, suffix
    ):
        theirs = make_analysis(other_project)
        method, body = ("GET", None) if not suffix else ("POST", {"question": "q", "rating": "up"})
        response = send(
            api_client,
            method,
            f"/v1/analyses/{theirs.id}{suffix}",
            credential=secret_key[1],
            body=body,
        )
        assert response.status_code == 404
        assert error_code(response) == "NOT_FOUND"
        assert not FollowUp.objects.exists() and not Feedback.objects.exists()

    @pytest.mark.parametrize(
        "analysis_id", ["not-a-uuid", "1", pytest.param(str(uuid.uuid4()), id="unknown")]
    )
    def test_unknown_or_malformed_id_is_not_found(self, api_client, secret_key, analysis_id):
        response = send(api_client, "GET", f"/v1/analyses/{analysis_id}", credential=secret_key[1])
        assert response.status_code == 404
        assert error_code(response) == "NOT_FOUND"


class TestFollowUps:
    def test_follow_up_is_created_and_shown_on_the_analysis(
        self, api_client, project, secret_key, make_analysis
    ):
        api_key, plaintext = secret_key
        analysis = make_analysis(project)
        response = send(
            api_client,
            "POST",
            f"/v1/analyses/{analysis.id}/follow-ups",
            credential=plaintext,
            body={"question": "Which deploy?"},
        )
        assert response.status_code == 201
        follow_up = FollowUp.objects.get()
        assert response.json() == {
            "id": str(follow_up.id),
            "question": "Which deploy?",
            "createdAt": follow_up.created_at.isoformat().replace("+00:00", "Z"),
            "createdBy": {"type": "key", "prefix": api_key.prefix},
        }
        detail = send(api_client, "GET", f"/v1/analyses/{analysis.id}", credential=plaintext)
        assert detail.json()["followUps"] == [response.json()]

    @pytest.mark.parametrize(
        "body",
        [{}, {"question": ""}, {"question": "q" * 10_001}, {"question": 5}, {"question": None}],
    )
    def test_invalid_question_is_a_validation_error(
        self, api_client, project, secret_key, make_analysis, body
    ):
        analysis = make_analysis(project)
        response = send(
            api_client,
            "POST",
            f"/v1/analyses/{analysis.id}/follow-ups",
            credential=secret_key[1],
            body=body,
        )
        assert response.status_code == 400
        assert list(validation_fields(response)) == ["question"]


class TestFeedback:
    @pytest.mark.parametrize(
        ("body", "stored_comment"),
        [
            ({"rating": "up"}, ""),
            ({"rating": "down", "comment": "missed the DB timeout"}, "missed the DB timeout"),
            ({"rating": "up", "comment": None}, ""),
            ({"rating": "up", "comment": "c" * 10_000}, "c" * 10_000),
        ],
    )
    def test_feedback_is_recorded(
        self, api_client, project, member, user_token, make_analysis, body, stored_comment
    ):
        analysis = make_analysis(project)
        response = send(
            api_client,
            "POST",
            f"/v1/analyses/{analysis.id}/feedback",
            credential=user_token(member),
            project_id=project.id,
            body=body,
        )
        assert response.status_code == 201
        feedback = Feedback.objects.get()
        assert (feedback.rating, feedback.comment) == (body["rating"], stored_comment)
        assert response.json() == {
            "id": str(feedback.id),
            "rating": body["rating"],
            "comment": stored_comment,
            "createdAt": feedback.created_at.isoformat().replace("+00:00", "Z"),
            "createdBy": {"type": "user", "email": member.email},
        }

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({}, "rating"),
            ({"rating": "meh"}, "rating"),
            ({"rating": "UP"}, "rating"),
            ({"rating": 1}, "rating"),
            ({"rating": "up", "comment": "c" * 10_001}, "comment"),
            ({"rating": "up", "comment": 3}, "comment"),
            ({"rating": "down", "coment": "wrong answer"}, "coment"),  # was dropped, 201
        ],
    )
    def test_invalid_feedback_is_a_validation_error(
        self, api_client, project, secret_key, make_analysis, body, field
    ):
        analysis = make_analysis(project)
        response = send(
            api_client,
            "POST",
            f"/v1/analyses/{analysis.id}/feedback",
            credential=secret_key[1],
            body=body,
        )
        assert response.status_code == 400
        assert list(validation_fields(response)) == [field]
        assert not Feedback.objects.exists()
