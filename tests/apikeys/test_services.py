"""Key services (SPEC §2.1, §4.7): mint, revoke, roll, leak reports, allowed origins, last use."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.apikeys import keyformat
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.leaks import LeakReport, report_leaked_keys
from apps.apikeys.models import ApiKey
from apps.apikeys.services import (
    LAST_USED_INTERVAL,
    mint_key,
    record_key_use,
    replace_legacy_key,
    revoke_key,
    roll_key,
    update_key,
)
from apps.audit.models import AuditEvent
from core.errors import PermissionsLocked, RateLimited, ValidationFailed
from core.times import iso
from tests.factories import ProjectFactory, make_key, make_legacy_key

pytestmark = pytest.mark.django_db

ALL = ["analysis:create", "analysis:read", "config:read", "config:write"]


def field_errors(exc_info) -> list[str]:
    return list(exc_info.value.details["fields"])


def mint(kind, project, **kwargs):
    organization = project.organization
    kwargs.setdefault("name", "deploy")
    if kind is not KeyKind.PUBLIC:
        kwargs.setdefault("permissions", ALL)
    return mint_key(
        actor=kwargs.pop("actor", None),
        kind=kind,
        organization=organization,
        project=None if kind is KeyKind.ORGANIZATION else project,
        **kwargs,
    )


class TestMint:
    @pytest.mark.parametrize(
        ("kind", "key_type", "scope", "has_project"),
        [
            (KeyKind.PUBLIC, "public", "project", True),
            (KeyKind.SECRET, "secret", "project", True),
            (KeyKind.ORGANIZATION, "secret", "organization", False),
        ],
    )
    def test_row_keeps_the_digest_and_display_prefix_only(
        self, project, owner, kind, key_type, scope, has_project
    ):
        minted = mint(kind, project, actor=owner)
        row = ApiKey.objects.get()
        assert (row.type, row.scope, row.project_id is not None) == (key_type, scope, has_project)
        assert row.digest == hashlib.sha256(minted.key.encode()).hexdigest()
        assert row.prefix == minted.key[: len(kind.prefix) + 8]
        assert row.created_by == owner
        random_part = minted.key[len(kind.prefix) : -6]
        for field in ApiKey._meta.concrete_fields:
            value = str(field.value_from_object(row))
            assert minted.key not in value and random_part not in value, field.name

    def test_sdk_keys_get_the_locked_permissions(self, project):
        assert mint(KeyKind.PUBLIC, project).api_key.permissions == [
            "analysis:create",
            "analysis:read",
        ]
        reordered = mint(KeyKind.PUBLIC, project, permissions=["analysis:read", "analysis:create"])
        assert reordered.api_key.permissions == ["analysis:create", "analysis:read"]

    @pytest.mark.parametrize(
        "permissions",
        [
            ["analysis:read"],
            ["analysis:create", "analysis:read", "config:read"],
            ["analysis:create", "analysis:create"],
            [],
            "analysis:create analysis:read",
        ],
    )
    def test_sdk_keys_refuse_any_other_permissions(self, project, permissions):
        with pytest.raises(PermissionsLocked):
            mint(KeyKind.PUBLIC, project, permissions=permissions)
        assert not ApiKey.objects.exists()

    def test_permissions_are_stored_once_in_canonical_order(self, project):
        minted = mint(
            KeyKind.SECRET,
            project,
            permissions=["config:write", "analysis:read", "config:write"],
        )
        assert minted.api_key.permissions == ["analysis:read", "config:write"]

    @pytest.mark.parametrize(
        "permissions", [[], None, "analysis:read", ["analysis:delete"], [1], ["ANALYSIS:READ"]]
    )
    @pytest.mark.parametrize("kind", [KeyKind.SECRET, KeyKind.ORGANIZATION])
    def test_other_keys_need_known_permissions(self, project, kind, permissions):
        with pytest.raises(ValidationFailed) as exc_info:
            mint(kind, project, permissions=permissions)
        assert field_errors(exc_info) == ["permissions"]

    @pytest.mark.parametrize("name", ["", "   ", "n" * 101, None, 5])
    def test_name_is_one_to_100_characters(self, project, name):
        with pytest.raises(ValidationFailed) as exc_info:
            mint(KeyKind.SECRET, project, name=name)
        assert field_errors(exc_info) == ["name"]

    def test_name_is_trimmed(self, project):
        assert mint(KeyKind.SECRET, project, name="  ci  ").api_key.name == "ci"

    def test_expiry_must_be_in_the_future_with_a_time_zone(self, project):
        now = timezone.now()
        for bad in (now - timedelta(seconds=1), now.replace(tzinfo=None) + timedelta(days=1)):
            with pytest.raises(ValidationFailed) as exc_info:
                mint(KeyKind.SECRET, project, expires_at=bad)
            assert field_errors(exc_info) == ["expiresAt"]
        later = now + timedelta(days=30)
        assert mint(KeyKind.SECRET, project, expires_at=later).api_key.expires_at == later

    def test_allowed_origins_are_normalised(self, project):
        minted = mint(
            KeyKind.PUBLIC,
            project,
            allowed_origins=[
                "https://App.Example.com",
                "https://app.example.com:443",
                "https://b.io:8443",
                "https://c.io:65535",
            ],
        )
        assert minted.api_key.allowed_origins == [
            "https://app.example.com",
            "https://b.io:8443",
            "https://c.io:65535",
        ]

    @pytest.mark.parametrize(
        "origins",
        [
            ["http://app.example.com"],
            ["https://app.example.com/path"],
            ["*"],
            ["https://app.example.com:99999"],
            ["https://app.example.com:65536"],
            ["https://app.example.com:0"],
            ["https://app.example.com:0443"],  # no browser sends a port with a leading zero
            "https://app.example.com",
            [f"https://a{i}.example.com" for i in range(21)],
        ],
    )
    def test_invalid_allowed_origins_are_refused(self, project, origins):
        with pytest.raises(ValidationFailed) as exc_info:
            mint(KeyKind.PUBLIC, project, allowed_origins=origins)
        assert field_errors(exc_info) == ["allowedOrigins"]

    @pytest.mark.parametrize("kind", [KeyKind.SECRET, KeyKind.ORGANIZATION])
    def test_only_sdk_keys_can_be_bound_to_origins(self, project, kind):
        with pytest.raises(ValidationFailed):
            mint(kind, project, allowed_origins=["https://app.example.com"])

    def test_mint_records_an_audit_event_without_the_key(self, project, owner):
        minted = mint(KeyKind.SECRET, project, actor=owner)
        event = AuditEvent.objects.get()
        assert (event.action, event.actor_user, event.target_label) == (
            "key.minted",
            owner,
            minted.api_key.prefix,
        )
        assert minted.key not in str(event.details)

    def test_key_of_a_project_of_another_organization_is_a_programming_error(
        self, project, organization
    ):
        elsewhere = ProjectFactory()
        with pytest.raises(ValueError):
            mint_key(
                actor=None,
                kind=KeyKind.SECRET,
                organization=organization,
                project=elsewhere,
                name="x",
                permissions=ALL,
            )

    @pytest.mark.usefixtures("throttle_clock")
    def test_minting_is_throttled_per_organization(self, project, settings):
        settings.THROTTLE_RATES = settings.THROTTLE_RATES | {"mint_org": (3, 60)}
        for _ in range(3):
            mint(KeyKind.SECRET, project)
        with pytest.raises(RateLimited):
            mint(KeyKind.SECRET, project)
        other = ProjectFactory()
        mint(KeyKind.SECRET, other)  # another organization is not affected
        assert ApiKey.objects.count() == 4


class TestRevoke:
    def test_revocation_is_recorded_once_and_keeps_the_first_time(self, project, owner, admin):
        api_key, _ = make_key(KeyKind.SECRET, project=project)
        revoke_key(actor=owner, api_key=api_key)
        first = ApiKey.objects.get().revoked_at
        again = revoke_key(actor=admin, api_key=api_key)
        assert again.revoked_at == first
        assert again.revoked_by == owner
        assert again.status == "revoked"
        assert AuditEvent.objects.filter(action="key.revoked").count() == 1


class TestRoll:
    def test_successor_copies_the_key_and_the_old_one_expires_after_the_grace(self, project, owner):
        old, _ = make_key(
            KeyKind.PUBLIC, project=project, allowed_origins=["https://app.example.com"]
        )
        before = timezone.now()
        minted = roll_key(actor=owner, api_key=old, grace_seconds=3600)
        new = minted.api_key
        assert (new.name, new.permissions, new.allowed_origins, new.replaces_id) == (
            old.name,
            old.permissions,
            ["https://app.example.com"],
            old.id,
        )
        assert keyformat.parse(minted.key).kind is KeyKind.PUBLIC
        old.refresh_from_db()
        assert (
            before + timedelta(seconds=3600)
            <= old.expires_at
            <= timezone.now() + timedelta(seconds=3600)
        )
        assert AuditEvent.objects.filter(action="key.rolled", target_id=str(new.id)).exists()

    def test_zero_grace_ends_the_old_key_now(self, project, owner):
        old, _ = make_key(KeyKind.SECRET, project=project)
        roll_key(actor=owner, api_key=old, grace_seconds=0)
        old.refresh_from_db()
        assert old.status == "expired"

    def test_grace_never_extends_an_earlier_expiry(self, project, owner):
        soon = timezone.now() + timedelta(minutes=5)
        old, _ = make_key(KeyKind.SECRET, project=project, expires_at=soon)
        roll_key(actor=owner, api_key=old, grace_seconds=86_400)
        old.refresh_from_db()
        assert old.expires_at == soon

    @pytest.mark.parametrize("grace", [-1, 604_801, "60", 1.5, True, None])
    def test_grace_is_a_whole_number_of_seconds_up_to_a_week(self, project, owner, grace):
        old, _ = make_key(KeyKind.SECRET, project=project)
        with pytest.raises(ValidationFailed) as exc_info:
            roll_key(actor=owner, api_key=old, grace_seconds=grace)
        assert field_errors(exc_info) == ["graceSeconds"]
        assert ApiKey.objects.count() == 1

    def test_revoked_key_cannot_be_rolled(self, project, owner):
        old, _ = make_key(KeyKind.SECRET, project=project)
        revoke_key(actor=owner, api_key=old)
        with pytest.raises(ValidationFailed):
            roll_key(actor=owner, api_key=old, grace_seconds=60)
        assert ApiKey.objects.count() == 1


class TestLeakReport:
    def test_active_keys_in_the_report_are_revoked_and_audited(self, project, owner):
        leaked, leaked_text = make_key(KeyKind.SECRET, project=project)
        safe, _ = make_key(KeyKind.PUBLIC, project=project)
        gone, gone_text = make_key(KeyKind.ORGANIZATION, organization=project.organization)
        revoke_key(actor=owner, api_key=gone)
        report = report_leaked_keys(
            candidates=[
                leaked_text,
                f"  {leaked_text}  ",
                gone_text,
                keyformat.generate(KeyKind.SECRET),
            ]
        )
        assert report == LeakReport(revoked=1, flagged=0)
        leaked.refresh_from_db()
        safe.refresh_from_db()
        assert (leaked.status, leaked.revoked_reason, safe.status) == (
            "revoked",
            "leak_report",
            "active",
        )
        event = AuditEvent.objects.get(action="key.revoked_by_leak_report")
        assert (event.actor_type, event.target_label) == ("anonymous", leaked.prefix)
        assert leaked_text not in str(event.details)

    def test_strings_that_are_not_keys_cost_no_query(self):
        garbage = ["", "hello", 42, None, "ss_secret_" + "a" * 38, "x" * 10_000, ["nested"]]
        with CaptureQueriesContext(connection) as ctx:
            assert report_leaked_keys(candidates=garbage) == LeakReport(revoked=0, flagged=0)
        assert ctx.captured_queries == []


class TestAllowedOrigins:
    def test_origins_can_be_changed_on_sdk_keys_only(self, project, owner):
        sdk, _ = make_key(KeyKind.PUBLIC, project=project)
        update_key(
            actor=owner, api_key=sdk, changes={"allowedOrigins": ["https://shop.example.com"]}
        )
        sdk.refresh_from_db()
        assert sdk.allowed_origins == ["https://shop.example.com"]
        secret, _ = make_key(KeyKind.SECRET, project=project)
        with pytest.raises(ValidationFailed):
            update_key(
                actor=owner, api_key=secret, changes={"allowedOrigins": ["https://a.example"]}
            )


class TestRecordKeyUse:
    def test_first_use_is_written(self, project):
        api_key, _ = make_key(KeyKind.SECRET, project=project)
        record_key_use(api_key, project.id)
        api_key.refresh_from_db()
        assert api_key.last_used_at is not None
        assert api_key.last_used_project_id is None  # only org keys track the project

    def test_recent_use_is_not_written_again(self, project):
        api_key, _ = make_key(KeyKind.SECRET, project=project)
        record_key_use(api_key, None)
        api_key.refresh_from_db()
        with CaptureQueriesContext(connection) as ctx:
            record_key_use(api_key, None, now=api_key.last_used_at + LAST_USED_INTERVAL / 2)
        assert ctx.captured_queries == []

    def test_stale_copies_in_two_processes_write_once(self, project):
        api_key, _ = make_key(KeyKind.SECRET, project=project)
        first, second = ApiKey.objects.get(), ApiKey.objects.get()
        now = timezone.now()
        record_key_use(first, None, now=now)
        record_key_use(second, None, now=now + timedelta(seconds=1))
        api_key.refresh_from_db()
        assert api_key.last_used_at == now

    def test_org_key_records_the_project(self, project, organization):
        api_key, _ = make_key(KeyKind.ORGANIZATION, organization=organization)
        record_key_use(api_key, project.id)
        api_key.refresh_from_db()
        assert api_key.last_used_project_id == project.id

    def test_a_use_after_the_interval_is_written(self, project):
        api_key, _ = make_key(KeyKind.SECRET, project=project)
        now = timezone.now()
        record_key_use(api_key, None, now=now)
        api_key.refresh_from_db()
        later = now + LAST_USED_INTERVAL
        record_key_use(api_key, None, now=later)
        api_key.refresh_from_db()
        assert api_key.last_used_at == later

    @pytest.mark.skipif(
        connection.vendor != "postgresql", reason="SQLite stores any text as an address"
    )
    def test_a_failed_write_inside_a_transaction_leaves_it_usable(self, project):
        """Tracking never poisons the caller's transaction: a write refused by the database
        is rolled back to a savepoint of its own (PostgreSQL refuses any later query of an
        aborted transaction)."""
        api_key, _ = make_key(KeyKind.SECRET, project=project)
        with transaction.atomic():
            record_key_use(api_key, None, ip="not an address")  # inet refuses it
            assert ApiKey.objects.filter(pk=api_key.pk).exists()
        api_key.refresh_from_db()
        assert api_key.last_used_at is None


@pytest.mark.usefixtures("before_the_sunset")  # legacy keys work on any day
def test_a_legacy_key_is_replaced_once(owner, project):
    legacy, _ = make_legacy_key(project)
    replace_legacy_key(actor=owner, api_key=legacy)

    with pytest.raises(ValidationFailed) as refused:
        replace_legacy_key(actor=owner, api_key=legacy)  # a reload, a second tab

    assert "already has a successor" in refused.value.details["fields"]["keyId"][0]
    assert ApiKey.objects.filter(replaces=legacy).count() == 1


@pytest.mark.usefixtures("before_the_sunset")  # legacy keys work on any day
def test_a_legacy_keys_replacement_keeps_its_guardrails(owner, project, api_client):
    """Found by a threat-model audit: the banner tells owners to Replace legacy keys, and
    the replacement worked from any address with no limit, where the legacy key was
    refused (a roll kept them)."""
    legacy, _ = make_legacy_key(
        project, allowed_ips=["203.0.113.0/24"], rate_limit_requests=5, rate_limit_seconds=60
    )

    minted = replace_legacy_key(actor=owner, api_key=legacy)

    successor = ApiKey.objects.get(replaces=legacy)
    assert successor.allowed_ips == ["203.0.113.0/24"]
    assert successor.rate_limit == {"requests": 5, "perSeconds": 60}
    response = api_client.get(
        "/v1/me", HTTP_AUTHORIZATION=f"Bearer {minted.key}", REMOTE_ADDR="198.51.100.1"
    )
    assert response.status_code == 403 and response.json()["error"]["code"] == "IP_NOT_ALLOWED"


@pytest.mark.usefixtures("before_the_sunset")  # legacy keys work on any day
def test_a_rolled_legacy_key_is_not_replaced_as_well(owner, project):
    legacy, _ = make_legacy_key(project)
    roll_key(actor=owner, api_key=legacy, grace_seconds=60)

    with pytest.raises(ValidationFailed):
        replace_legacy_key(actor=owner, api_key=legacy)
    assert ApiKey.objects.filter(replaces=legacy).count() == 1


@pytest.mark.parametrize("ended", ["revoked", "expired"])
def test_only_an_active_legacy_key_is_replaced(owner, project, ended):
    legacy, _ = make_legacy_key(project)
    if ended == "revoked":
        revoke_key(actor=owner, api_key=legacy)
    else:
        ApiKey.objects.filter(pk=legacy.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    legacy.refresh_from_db()

    with pytest.raises(ValidationFailed) as refused:
        replace_legacy_key(actor=owner, api_key=legacy)

    assert refused.value.details["fields"]["keyId"] == ["Only an active key can be replaced."]
    assert not ApiKey.objects.filter(replaces=legacy).exists()


def test_the_audit_records_what_a_mint_and_a_roll_set(owner, project):
    """Found by a threat-model audit: `key.minted` and `key.rolled` named who, not the
    expiry set nor what the roll did to the old key (a roll with no grace that broke a
    deploy was not told apart from one with a week)."""
    expires_at = timezone.now() + timedelta(days=30)
    minted = mint_key(
        actor=owner,
        kind=KeyKind.SECRET,
        organization=project.organization,
        project=project,
        name="Deploy",
        permissions=["analysis:read"],
        expires_at=expires_at,
    )
    minted_event = AuditEvent.objects.get(action="key.minted", target_id=minted.api_key.id)
    assert minted_event.details["expiresAt"] == iso(expires_at)

    roll_key(actor=owner, api_key=minted.api_key, grace_seconds=3600)

    minted.api_key.refresh_from_db()
    successor = ApiKey.objects.get(replaces=minted.api_key)
    rolled = AuditEvent.objects.get(action="key.rolled").details
    assert rolled["graceSeconds"] == 3600
    assert rolled["replacedKeyExpiresAt"] == iso(minted.api_key.expires_at)
    assert rolled["expiresAt"] == iso(successor.expires_at)
    assert minted.api_key.expires_at < expires_at


def test_a_roll_never_lengthens_the_old_keys_life(owner, project):
    soon = timezone.now() + timedelta(minutes=5)
    old, _ = make_key(KeyKind.SECRET, project=project, expires_at=soon)

    roll_key(actor=owner, api_key=old, grace_seconds=3600)

    old.refresh_from_db()
    assert old.expires_at == soon
    assert AuditEvent.objects.get(action="key.rolled").details["replacedKeyExpiresAt"] == iso(soon)
