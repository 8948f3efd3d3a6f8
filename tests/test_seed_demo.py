"""`manage.py seed_demo` (SPEC §7): a complete demo, created once, with no key printed."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.apps import apps
from django.core.management import CommandError, call_command
from django.utils import timezone

from apps.accounts.models import User
from apps.accounts.services import login
from apps.analyses.models import Analysis
from apps.apikeys import keyformat
from apps.apikeys.models import ApiKey, KeyScope, KeyType
from apps.apikeys.selectors import legacy_keys_in_scope
from apps.apikeys.usage.answer import key_usage
from apps.audit.models import AuditEvent
from apps.audit.services import Action
from apps.orgs.models import Membership, Organization
from apps.projects.models import Channel, LogSource, Project
from core.permissions import Role

pytestmark = pytest.mark.django_db

DEMO_EMAIL = "demo@sigsentry.dev"
DEMO_PASSWORD = "sigsentry-demo-2026"
LEGACY_NAME = "Traceback integration (legacy)"


@pytest.fixture(autouse=True)
def _debug_on(settings):
    """As `make run` and CI's migration round trip run it: DEBUG=true."""
    settings.DEBUG = True


def seed(*args: str) -> str:
    out = io.StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def row_counts() -> dict[str, int]:
    return {
        model._meta.label: model.objects.count()
        for model in apps.get_models()
        if model._meta.app_label in {"accounts", "orgs", "projects", "apikeys", "analyses", "audit"}
    }


def test_seed_creates_the_demo_user_organization_and_projects():
    seed()

    user = User.objects.get(email=DEMO_EMAIL)
    organization = Organization.objects.get(name="Demo Org")
    assert Membership.objects.get(user=user, organization=organization).role == Role.OWNER
    assert set(
        Project.objects.filter(organization=organization).values_list("name", flat=True)
    ) == {
        "Checkout Service",
        "Mobile App",
    }
    roles = dict(
        Membership.objects.filter(organization=organization).values_list("user__email", "role")
    )
    assert roles == {DEMO_EMAIL: Role.OWNER, "viewer@sigsentry.dev": Role.VIEWER}


def test_demo_users_can_log_in_with_the_printed_password():
    seed()

    for email in (DEMO_EMAIL, "viewer@sigsentry.dev"):
        assert login(email=email, password=DEMO_PASSWORD).access


def test_seed_creates_keys_of_every_kind():
    seed()

    keys = {k.name: k for k in ApiKey.objects.filter(organization__name="Demo Org")}
    kinds = {(k.type, k.scope, k.legacy) for k in keys.values()}
    assert kinds == {
        (KeyType.PUBLIC, KeyScope.PROJECT, False),
        (KeyType.SECRET, KeyScope.PROJECT, False),
        (KeyType.SECRET, KeyScope.ORGANIZATION, False),
        (KeyType.SECRET, KeyScope.PROJECT, True),
    }
    secret = [k for k in keys.values() if k.type == KeyType.SECRET and k.scope == "project"]
    assert len([k for k in secret if not k.legacy]) == 2
    assert [k.status for k in secret if k.revoked_at is not None] == ["revoked"]
    recently_used = [
        k.name
        for k in keys.values()
        if k.last_used_at is not None and timezone.now() - k.last_used_at < timedelta(minutes=10)
    ]
    assert sorted(recently_used) == ["CI deploy pipeline", "Checkout web SDK"]


def test_seed_gives_the_demo_keys_a_usage_history_and_one_unused_key():
    seed()
    seed()

    keys = {k.name: k for k in ApiKey.objects.filter(organization__name="Demo Org")}
    ci = key_usage(keys["CI deploy pipeline"], "day")
    assert ci["total"]["requests"] > 1000
    assert ci["recentIps"]
    hourly = key_usage(keys["Checkout web SDK"], "hour")
    assert hourly["total"]["requests"] == sum(bucket["requests"] for bucket in hourly["series"])
    assert hourly["total"]["refused"] > 0
    reporting = keys["Org-wide reporting"]
    assert timezone.now() - reporting.last_used_at > timedelta(days=30)
    assert key_usage(keys[LEGACY_NAME], "day")["total"]["requests"] == 0


@pytest.mark.usefixtures("before_the_sunset")  # legacy keys work on any day
def test_seed_imports_a_legacy_key_so_the_banner_shows():
    seed()

    checkout = Project.objects.get(name="Checkout Service")
    legacy = legacy_keys_in_scope(
        organization_id=checkout.organization_id, project_id=checkout.id
    ).get()
    assert legacy.prefix.startswith("tb_")
    assert len(legacy.prefix) == len("tb_") + 8
    assert legacy.status == "active"
    assert AuditEvent.objects.filter(
        action=Action.LEGACY_KEYS_IMPORTED, organization_id=checkout.organization_id
    ).exists()


def test_seed_creates_analyses_with_a_follow_up_and_feedback_and_configuration():
    seed()

    checkout = Project.objects.get(name="Checkout Service")
    analyses = Analysis.objects.filter(project=checkout)
    assert analyses.count() == 3
    assert sum(a.follow_ups.count() for a in analyses) >= 1
    assert sum(a.feedback.count() for a in analyses) >= 1
    assert {a.created_by_type for a in analyses} == {"user", "key"}
    assert LogSource.objects.filter(project=checkout).count() == 1
    assert Channel.objects.filter(project=checkout).count() == 1


def test_seeding_twice_creates_nothing_new():
    seed()
    first = row_counts()

    seed()

    assert row_counts() == first
    assert first["apikeys.ApiKey"] == 5


def test_seed_keeps_the_recent_key_recent():
    seed()
    ApiKey.objects.exclude(last_used_at=None).update(
        last_used_at=timezone.now() - timedelta(days=30)
    )

    seed()

    used = ApiKey.objects.get(name="CI deploy pipeline")
    assert timezone.now() - used.last_used_at < timedelta(minutes=10)


def test_seed_prints_how_to_log_in_and_no_key():
    output = seed()

    assert "http://127.0.0.1:8000/login/" in output
    assert DEMO_EMAIL in output
    assert DEMO_PASSWORD in output
    assert keyformat.KEY_PATTERN.search(output) is None
    assert keyformat.LEGACY_KEY_PATTERN.search(output) is None
    for api_key in ApiKey.objects.all():
        assert api_key.prefix not in output


def test_seed_refuses_to_run_with_debug_off(settings):
    settings.DEBUG = False
    before = row_counts()

    with pytest.raises(CommandError, match=r"published password.*--force"):
        seed()

    assert row_counts() == before
    assert not User.objects.filter(email=DEMO_EMAIL).exists()


def test_seed_runs_with_debug_off_when_forced(settings):
    settings.DEBUG = False

    seed("--force")

    assert login(email=DEMO_EMAIL, password=DEMO_PASSWORD).access
