"""The configuration API (SPEC §4.5): log sources and channels of one project."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest
from django.core.mail.message import sanitize_address

from apps.apikeys.keyformat import KeyKind
from apps.projects import services
from apps.projects.models import Channel, LogSource
from core.net import ASCII_HOST_NAME
from tests.analyses.helpers import error_code, send, validation_fields
from tests.factories import make_key

pytestmark = pytest.mark.django_db


def z(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture
def key(project):
    """Plaintext of an `ss_secret_` key of `project` with all four permissions."""
    return make_key(KeyKind.SECRET, project=project)[1]


@pytest.fixture
def log_source(project):
    return services.create_log_source(
        project=project, name="edge", kind="http", settings={"path": "/ingest"}
    )


@pytest.fixture
def channel(project):
    return services.create_channel(
        project=project, name="on-call", kind="email", target="oncall@example.com"
    )


@pytest.fixture
def foreign_rows(other_project):
    """A log source and a channel of another project of the same organization."""
    return (
        services.create_log_source(project=other_project, name="theirs", kind="s3"),
        services.create_channel(project=other_project, name="theirs", kind="slack", target="#x"),
    )


def test_config_lists_the_projects_log_sources_and_channels(
    api_client, key, log_source, channel, foreign_rows
):
    response = send(api_client, "GET", "/v1/config", credential=key)
    assert response.status_code == 200
    assert response.json() == {
        "logSources": [
            {
                "id": str(log_source.id),
                "name": "edge",
                "kind": "http",
                "settings": {"path": "/ingest"},
                "createdAt": z(log_source.created_at),
                "updatedAt": z(log_source.updated_at),
            }
        ],
        "channels": [
            {
                "id": str(channel.id),
                "name": "on-call",
                "kind": "email",
                "target": "oncall@example.com",
                "createdAt": z(channel.created_at),
                "updatedAt": z(channel.updated_at),
            }
        ],
    }


class TestLogSources:
    @pytest.mark.parametrize("kind", ["http", "syslog", "s3", "otlp"])
    def test_log_source_is_created(self, api_client, project, key, kind):
        response = send(
            api_client,
            "POST",
            "/v1/config/log-sources",
            credential=key,
            body={"name": " ingest ", "kind": kind, "settings": {"region": "eu-west-1"}},
        )
        assert response.status_code == 201
        log_source = LogSource.objects.get()
        assert log_source.project == project
        assert response.json() == {
            "id": str(log_source.id),
            "name": "ingest",
            "kind": kind,
            "settings": {"region": "eu-west-1"},
            "createdAt": z(log_source.created_at),
            "updatedAt": z(log_source.updated_at),
        }

    def test_settings_default_to_an_empty_object(self, api_client, key):
        body = {"name": "syslog", "kind": "syslog"}
        response = send(api_client, "POST", "/v1/config/log-sources", credential=key, body=body)
        assert response.status_code == 201
        assert response.json()["settings"] == {}

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"kind": "http"}, "name"),
            ({"name": "", "kind": "http"}, "name"),
            ({"name": "n" * 101, "kind": "http"}, "name"),
            ({"name": 7, "kind": "http"}, "name"),
            ({"name": "n"}, "kind"),
            ({"name": "n", "kind": "kafka"}, "kind"),
            ({"name": "n", "kind": "http", "settings": []}, "settings"),
            ({"name": "n", "kind": "http", "settings": "a=b"}, "settings"),
            ({"name": "n", "kind": "http", "settings": None}, "settings"),
            ({"name": "n", "kind": "http", "settings": {"x": "y" * 10240}}, "settings"),
            ({"name": "n", "kind": "http", "settings": {str(i): i for i in range(51)}}, "settings"),
            ({"name": "n", "kind": "http", "settings": {"x": "\x00"}}, "settings"),
            ({"name": "prod\u202egnp.exe", "kind": "http"}, "name"),  # shown reversed
            ({"name": "a\nb", "kind": "http"}, "name"),
            ({"name": "n", "kind": "http", "setting": {"path": "/x"}}, "setting"),  # misspelled
        ],
    )
    def test_invalid_log_source_is_a_validation_error(self, api_client, key, body, field):
        response = send(api_client, "POST", "/v1/config/log-sources", credential=key, body=body)
        assert response.status_code == 400
        assert list(validation_fields(response)) == [field]
        assert not LogSource.objects.exists()

    @pytest.mark.parametrize(
        "name",
        ["\u200d", "\u2800", "\u200f", "prod\U000e0041\U000e0042", "prod\u034f", "prod\ufe0f"],
    )
    @pytest.mark.parametrize("collection", ["log-sources", "channels"])
    def test_a_name_that_shows_nothing_or_hides_characters_is_refused_as_every_name(
        self, api_client, key, collection, name
    ):
        """A Unicode audit: configuration names took a joiner or a braille blank alone (an
        empty row) and tag letters (hidden text), which keys and projects refuse."""
        body = {"name": name, "kind": "http" if collection == "log-sources" else "email"}
        if collection == "channels":
            body["target"] = "ops@example.com"

        response = send(api_client, "POST", f"/v1/config/{collection}", credential=key, body=body)

        assert response.status_code == 400
        assert list(validation_fields(response)) == ["name"]
        assert not LogSource.objects.exists() and not Channel.objects.exists()

    def test_a_decomposed_name_is_stored_composed_and_counted_so(self, api_client, key):
        body = {"name": "e\u0301" * 60, "kind": "http"}  # 120 code points, 60 characters

        response = send(api_client, "POST", "/v1/config/log-sources", credential=key, body=body)

        assert response.status_code == 201
        assert response.json()["name"] == LogSource.objects.get().name == "\xe9" * 60

    def test_huge_number_in_settings_is_a_validation_error(self, api_client, key):
        response = api_client.post(
            "/v1/config/log-sources",
            b'{"name": "n", "kind": "http", "settings": {"rate": 1e999}}',
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {key}",
        )
        assert response.status_code == 400
        assert list(validation_fields(response)) == ["settings"]

    def test_patch_changes_only_the_given_fields(self, api_client, key, log_source):
        response = send(
            api_client,
            "PATCH",
            f"/v1/config/log-sources/{log_source.id}",
            credential=key,
            body={"settings": {"path": "/v2"}},
        )
        assert response.status_code == 200
        body = response.json()
        assert (body["name"], body["kind"], body["settings"]) == ("edge", "http", {"path": "/v2"})
        assert datetime.fromisoformat(body["updatedAt"]) > datetime.fromisoformat(body["createdAt"])
        log_source.refresh_from_db()
        assert log_source.settings == {"path": "/v2"}

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"setting": {"url": "https://logs.example.com"}}, "setting"),
            ({"name": "a\x1b[31m"}, "name"),
        ],
    )
    def test_a_misspelled_field_or_a_control_character_changes_nothing(
        self, api_client, key, log_source, body, field
    ):
        """Found by an audit: a misspelled `setting` answered 200 and changed nothing."""
        path = f"/v1/config/log-sources/{log_source.id}"
        response = send(api_client, "PATCH", path, credential=key, body=body)
        assert response.status_code == 400
        assert list(validation_fields(response)) == [field]
        log_source.refresh_from_db()
        assert (log_source.name, log_source.settings) == ("edge", {"path": "/ingest"})

    def test_invalid_patch_changes_nothing(self, api_client, key, log_source):
        response = send(
            api_client,
            "PATCH",
            f"/v1/config/log-sources/{log_source.id}",
            credential=key,
            body={"name": "renamed", "kind": "carrier-pigeon"},
        )
        assert response.status_code == 400
        assert list(validation_fields(response)) == ["kind"]
        log_source.refresh_from_db()
        assert (log_source.name, log_source.kind) == ("edge", "http")

    def test_delete_removes_the_log_source(self, api_client, key, log_source):
        path = f"/v1/config/log-sources/{log_source.id}"
        response = send(api_client, "DELETE", path, credential=key)
        assert response.status_code == 204
        assert response.content == b""
        assert not LogSource.objects.exists()
        again = send(api_client, "DELETE", path, credential=key)
        assert (again.status_code, error_code(again)) == (404, "NOT_FOUND")


class TestChannels:
    @pytest.mark.parametrize(
        ("kind", "target"),
        [
            ("email", "alerts@example.com"),
            ("slack", "https://hooks.slack.com/services/T0/B0/abc"),
            ("slack", "#alerts"),
            ("webhook", "https://example.com/hooks/sigsentry"),
        ],
    )
    def test_channel_is_created(self, api_client, project, key, kind, target):
        body = {"name": "alerts", "kind": kind, "target": target}
        response = send(api_client, "POST", "/v1/config/channels", credential=key, body=body)
        assert response.status_code == 201
        channel = Channel.objects.get()
        assert channel.project == project
        assert response.json() == {
            "id": str(channel.id),
            "name": "alerts",
            "kind": kind,
            "target": target,
            "createdAt": z(channel.created_at),
            "updatedAt": z(channel.updated_at),
        }

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"kind": "email", "target": "a@example.com"}, "name"),
            ({"name": "n", "target": "a@example.com"}, "kind"),
            ({"name": "n", "kind": "sms", "target": "+15550100"}, "kind"),
            ({"name": "n", "kind": "email"}, "target"),
            ({"name": "n", "kind": "email", "target": "#alerts"}, "target"),
            ({"name": "n", "kind": "slack", "target": "https://example.com/x"}, "target"),
            ({"name": "n", "kind": "webhook", "target": "http://example.com/x"}, "target"),
            ({"name": "n", "kind": "webhook", "target": ["https://example.com"]}, "target"),
        ],
    )
    def test_invalid_channel_is_a_validation_error(self, api_client, key, body, field):
        response = send(api_client, "POST", "/v1/config/channels", credential=key, body=body)
        assert response.status_code == 400
        assert list(validation_fields(response)) == [field]
        assert not Channel.objects.exists()

    @pytest.mark.parametrize(
        ("target", "message"),
        [
            ("ana@b\u00fccher.example", ASCII_HOST_NAME),
            ("ops@metadata.google\u3002internal", ASCII_HOST_NAME),  # IDNA reads U+3002 as "."
            ("jos\u00e9@example.com", services.NON_ASCII_MAILBOX),
            ("\u8fd0\u7ef4@\u4f8b\u5b50.\u4e2d\u56fd", services.NON_ASCII_MAILBOX),
        ],
    )
    def test_an_email_channel_not_in_ascii_is_a_validation_error(
        self, api_client, key, target, message
    ):
        """Found by an email audit: Django's validator took a domain in any script, whose
        IDNA form depends on which IDNA (as the webhook targets' hosts), and refused a
        non-ASCII mailbox as "Must be an email address." without saying why."""
        body = {"name": "n", "kind": "email", "target": target}

        response = send(api_client, "POST", "/v1/config/channels", credential=key, body=body)

        assert (response.status_code, error_code(response)) == (400, "VALIDATION_ERROR")
        assert validation_fields(response) == {"target": [message]}
        assert not Channel.objects.exists()

    def test_an_email_channel_with_an_internationalized_domain_in_its_xn_form_is_created(
        self, api_client, key
    ):
        target = "ana@xn--bcher-kva.example"
        body = {"name": "n", "kind": "email", "target": target}

        response = send(api_client, "POST", "/v1/config/channels", credential=key, body=body)

        assert response.status_code == 201
        assert Channel.objects.get().target == target
        # what a mail library puts in the message and the envelope: the address as stored
        assert sanitize_address(target, "utf-8") == target

    def test_patching_the_target_checks_it_against_the_current_kind(self, api_client, key, channel):
        path = f"/v1/config/channels/{channel.id}"
        refused = send(api_client, "PATCH", path, credential=key, body={"target": "#ops"})
        assert refused.status_code == 400
        assert list(validation_fields(refused)) == ["target"]
        accepted = send(
            api_client, "PATCH", path, credential=key, body={"kind": "slack", "target": "#ops"}
        )
        assert accepted.status_code == 200
        assert (accepted.json()["kind"], accepted.json()["target"]) == ("slack", "#ops")
        channel.refresh_from_db()
        assert (channel.kind, channel.target) == ("slack", "#ops")

    def test_delete_removes_the_channel(self, api_client, key, channel):
        response = send(api_client, "DELETE", f"/v1/config/channels/{channel.id}", credential=key)
        assert response.status_code == 204
        assert not Channel.objects.exists()


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
@pytest.mark.parametrize("collection", ["log-sources", "channels"])
def test_rows_of_another_project_are_not_found_and_untouched(
    api_client, key, foreign_rows, method, collection
):
    row = foreign_rows[0] if collection == "log-sources" else foreign_rows[1]
    response = send(
        api_client, method, f"/v1/config/{collection}/{row.id}", credential=key, body={"name": "x"}
    )
    assert response.status_code == 404
    assert error_code(response) == "NOT_FOUND"
    row.refresh_from_db()
    assert row.name == "theirs"


@pytest.mark.parametrize(
    "row_id", ["not-a-uuid", "0", pytest.param(str(uuid.uuid4()), id="unknown")]
)
@pytest.mark.parametrize("collection", ["log-sources", "channels"])
def test_unknown_or_malformed_ids_are_not_found(api_client, key, row_id, collection):
    response = send(api_client, "DELETE", f"/v1/config/{collection}/{row_id}", credential=key)
    assert (response.status_code, error_code(response)) == (404, "NOT_FOUND")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/config"),
        ("GET", "/v1/config/log-sources"),
        ("PUT", "/v1/config/channels"),
        ("GET", "/v1/config/channels/{id}"),
    ],
)
def test_unsupported_methods_are_method_not_allowed(api_client, key, channel, method, path):
    response = send(api_client, method, path.format(id=channel.id), credential=key)
    assert response.status_code == 405
    assert error_code(response) == "METHOD_NOT_ALLOWED"


def test_viewer_reads_but_cannot_write_configuration(
    api_client, project, viewer, user_token, log_source
):
    token = user_token(viewer)
    read = send(api_client, "GET", "/v1/config", credential=token, project_id=project.id)
    assert read.status_code == 200
    write = send(
        api_client,
        "PATCH",
        f"/v1/config/log-sources/{log_source.id}",
        credential=token,
        project_id=project.id,
        body={"name": "hijacked"},
    )
    assert write.status_code == 403
    assert write.json()["error"]["code"] == "PERMISSION_DENIED"
    assert write.json()["error"]["details"] == {"required": "config:write"}
    log_source.refresh_from_db()
    assert log_source.name == "edge"
