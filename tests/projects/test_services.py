"""Configuration services: the rules of channel targets and log-source settings."""

from __future__ import annotations

import uuid

import pytest

from apps.projects import selectors, services
from apps.projects.models import Channel, LogSource
from core.errors import NotFound, ValidationFailed
from tests.webhooks.test_urlsafety import REFUSED_ADDRESSES

pytestmark = pytest.mark.django_db


def fields(exc_info) -> dict:
    return exc_info.value.details["fields"]


@pytest.mark.parametrize(
    ("kind", "target"),
    [
        ("email", "alerts@example.com"),
        ("email", "  ops+sigsentry@sub.example.org "),
        ("slack", "https://hooks.slack.com/services/T000/B000/XXXXXXXX"),
        ("slack", "#incidents"),
        ("slack", "#team_ops-2"),
        ("webhook", "https://hooks.example.com/sigsentry?token=abc"),
        ("webhook", "https://example.com:8443/path"),
    ],
)
def test_valid_targets_are_accepted(kind, target):
    assert services.clean_channel_target(kind, target) == target.strip()


def _in_url(address: str) -> str:
    return f"https://[{address}]/hook" if ":" in address else f"https://{address}/hook"


@pytest.mark.parametrize(
    "target",
    [_in_url(address) for address in REFUSED_ADDRESSES]
    + [
        # What C resolvers read as 127.0.0.1: not URLs to Django's validator (the NAT64,
        # 6to4 and site-local forms above were accepted, found by the SSRF audit: the
        # check was `ipaddress`'s `is_global` alone).
        "https://2130706433/hook",
        "https://0x7f.1/hook",
        "https://0177.0.0.1/hook",
        "https://127.1/hook",
        "https://[fe80::1%25lo]/hook",
        # Names for a network's inside.
        "https://metadata.google.internal/computeMetadata/v1/",
        "https://localhost.localdomain/hook",
        "https://printer.local/hook",
        "https://router.home.arpa/hook",
    ],
)
def test_a_webhook_channel_aimed_inside_is_refused_as_the_webhooks_guard_refuses(target):
    with pytest.raises(ValidationFailed) as exc_info:
        services.clean_channel_target("webhook", target)
    assert list(fields(exc_info)) == ["target"]


@pytest.mark.parametrize(
    "target",
    [
        # IDNA (what requests, browsers and curl apply) reads these full stops as "." and
        # folds the letters: the names above in other spellings (found by a Unicode audit)
        "https://metadata.google\u3002internal/computeMetadata/v1/",
        "https://metadata.google\uff0einternal/computeMetadata/v1/",
        "https://printer.office\uff61local/hook",
        "https://router.home\u3002arpa/hook",
        "https://\uff4d\uff45\uff54\uff41\uff44\uff41\uff54\uff41.google.com/hook",
        "https://stra\xdfe.example/hook",  # another domain under IDNA 2003 than 2008
    ],
)
def test_a_webhook_channel_with_a_unicode_host_name_is_refused(target):
    with pytest.raises(ValidationFailed) as exc_info:
        services.clean_channel_target("webhook", target)
    assert fields(exc_info) == {
        "target": [
            "Write an internationalized host name in its ASCII form (xn--…), "
            "as your DNS provider shows it."
        ]
    }


def test_a_webhook_channel_may_name_an_internationalized_host_in_its_ascii_form():
    target = "https://xn--bcher-kva.example/hook"

    assert services.clean_channel_target("webhook", target) == target


@pytest.mark.parametrize(
    "target",
    [_in_url(address) for address in ("8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8")]
    + ["https://hooks.internal-tools.example.com/x", "https://local.example/x"],
)
def test_a_webhook_channel_aimed_at_public_addresses_and_names_is_accepted(target):
    assert services.clean_channel_target("webhook", target) == target


@pytest.mark.parametrize(
    ("kind", "target"),
    [
        ("email", "not-an-email"),
        ("email", "a@b@example.com"),
        ("email", "#incidents"),
        ("email", ""),
        ("slack", "http://hooks.slack.com/services/T000/B000/XXX"),
        ("slack", "https://hooks.slack.com.evil.example/services/x"),
        ("slack", "https://evil.example/hooks.slack.com/services/x"),
        ("slack", "https://hooks.slack.com@evil.example/x"),
        ("slack", "https://hooks.slack.com/"),
        ("slack", "incidents"),
        ("slack", "#Incidents"),
        ("slack", "#with space"),
        ("slack", "#" + "a" * 81),
        ("webhook", "http://example.com/hook"),
        ("webhook", "ftp://example.com/hook"),
        ("webhook", "example.com/hook"),
        ("webhook", "https://user:secret@example.com/hook"),
        ("webhook", "https://localhost/hook"),
        ("webhook", "https://localhost./hook"),
        ("webhook", "https://foo.localhost./hook"),
        ("webhook", "https://127.0.0.1./hook"),
        ("webhook", "https://127.0.0.1/hook"),
        ("webhook", "https://10.1.2.3/hook"),
        ("webhook", "https://169.254.169.254/latest/meta-data"),
        ("webhook", "https://[::1]/hook"),
        ("webhook", "https://example.com/" + "a" * 500),
        ("webhook", 42),
        ("webhook", None),
        # Shown as another target than they are (found by the review): a right-to-left
        # override, a zero-width space.
        ("webhook", "https://example.com/invoice\u202egnp.exe"),
        ("webhook", "https://exa\u200bmple.com/x"),
        ("slack", "https://hooks.slack.com/services/T000/B000/X\u202eY"),
    ],
)
def test_invalid_targets_are_refused(kind, target):
    with pytest.raises(ValidationFailed) as exc_info:
        services.clean_channel_target(kind, target)
    assert list(fields(exc_info)) == ["target"]


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"endpoint": "https://logs.example.com", "batch": 100, "tls": True, "ratio": 0.5},
        {f"k{i}": i for i in range(50)},
        {"a": {"b": {"c": {"d": {"e": {"f": {"g": [1]}}}}}}},
        {"blob": "x" * (10 * 1024 - 12)},
    ],
)
def test_valid_settings_are_accepted(settings):
    assert services.clean_log_source_settings(settings) == settings


@pytest.mark.parametrize(
    "settings",
    [
        [],
        "text",
        {f"k{i}": i for i in range(51)},
        {"blob": "x" * (10 * 1024)},
        {"blob": "é" * (5 * 1024)},
        {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {}}}}}}}}},
        {"a": [[[[[[[[1]]]]]]]]},
        {"nul": "a\x00b"},
        {"nul\x00key": 1},
        {"deep": {"nul": ["\x00"]}},
        {"n": float("inf")},
        {"n": [float("nan")]},
        {"bad": "\ud800"},
    ],
)
def test_invalid_settings_are_refused(settings):
    with pytest.raises(ValidationFailed) as exc_info:
        services.clean_log_source_settings(settings)
    assert list(fields(exc_info)) == ["settings"]


def test_log_source_update_changes_only_what_is_given(project):
    log_source = services.create_log_source(
        project=project, name="edge", kind="http", settings={"a": 1}
    )
    created_at, updated_at = log_source.created_at, log_source.updated_at
    services.update_log_source(log_source=log_source, changes={"name": "edge-2"})
    log_source.refresh_from_db()
    assert (log_source.name, log_source.kind, log_source.settings) == ("edge-2", "http", {"a": 1})
    assert log_source.created_at == created_at
    assert log_source.updated_at > updated_at


def test_changing_a_channel_kind_rechecks_the_stored_target(project):
    channel = services.create_channel(
        project=project, name="ops", kind="email", target="ops@example.com"
    )
    with pytest.raises(ValidationFailed) as exc_info:
        services.update_channel(channel=channel, changes={"kind": "webhook"})
    assert list(fields(exc_info)) == ["target"]
    channel.refresh_from_db()
    assert (channel.kind, channel.target) == ("email", "ops@example.com")
    services.update_channel(channel=channel, changes={"kind": "slack", "target": "#ops"})
    channel.refresh_from_db()
    assert (channel.kind, channel.target) == ("slack", "#ops")


def test_updating_a_row_deleted_meanwhile_is_not_found(project):
    channel = services.create_channel(project=project, name="c", kind="slack", target="#c")
    Channel.objects.filter(pk=channel.pk).delete()
    with pytest.raises(NotFound):
        services.update_channel(channel=channel, changes={"name": "again"})


def test_selectors_never_reach_into_another_project(project, other_project):
    mine = services.create_log_source(project=project, name="mine", kind="s3")
    theirs = services.create_log_source(project=other_project, name="theirs", kind="s3")
    theirs_channel = services.create_channel(
        project=other_project, name="theirs", kind="slack", target="#x"
    )
    assert list(selectors.log_sources_of(project=project)) == [mine]
    assert list(selectors.channels_of(project=project)) == []
    assert selectors.log_source_in_project(project=project, log_source_id=mine.id) == mine
    for missing in (theirs.id, uuid.uuid4(), "nope"):
        with pytest.raises(NotFound):
            selectors.log_source_in_project(project=project, log_source_id=missing)
    with pytest.raises(NotFound):
        selectors.channel_in_project(project=project, channel_id=theirs_channel.id)
    assert LogSource.objects.count() == 2
