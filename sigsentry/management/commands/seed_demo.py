"""`manage.py seed_demo`: demo data for a first look (SPEC §7). Idempotent.

A demo owner and a viewer in "Demo Org", two projects, keys of every kind (an
SDK key, two secret keys — one revoked, one used a few minutes ago — an
organization key and an imported legacy key, so the legacy banner shows) with
a usage history for the key pages' charts (the organization key unused for
over a month), three analyses with a follow-up and feedback, a log source and a channel.

Everything is created through the product's services, so audit events are the
real ones. Each item is looked up by name first: running the command again
creates nothing. Key plaintexts are never printed (the product shows a key
once, at mint; the demo only needs the rows).

The demo accounts have a published password (it is in the README), so the
command refuses to run with DEBUG off unless given `--force`: an operator who
runs it on a production database by mistake gets an error, not a backdoor.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.conf import settings
from django.core.management.base import CommandError
from django.db import transaction
from django.utils import timezone

from apps.accounts.models import User
from apps.analyses.models import Analysis
from apps.analyses.services import create_analysis, create_feedback, create_follow_up
from apps.apikeys import keyformat
from apps.apikeys.demo import seed_demo_usage
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.legacy import LegacyKeySpec, import_legacy_keys
from apps.apikeys.models import ApiKey
from apps.apikeys.services import mint_key, revoke_key
from apps.orgs.models import Membership, Organization
from apps.orgs.services import add_member, create_organization
from apps.projects.models import Channel, LogSource, Project
from apps.projects.services import create_channel, create_log_source, create_project
from core.management.base import BaseCommand
from core.permissions import Permission, Role
from core.principal import Principal

DEMO_EMAIL = "demo@sigsentry.dev"
DEMO_PASSWORD = "sigsentry-demo-2026"
DEMO_VIEWER_EMAIL = "viewer@sigsentry.dev"
DEMO_ORGANIZATION = "Demo Org"
DEMO_PROJECTS = ("Checkout Service", "Mobile App")

SDK_KEY_NAME = "Checkout web SDK"
RECENT_KEY_NAME = "CI deploy pipeline"
REVOKED_KEY_NAME = "Old build server"
ORG_KEY_NAME = "Org-wide reporting"
LEGACY_KEY_NAME = "Traceback integration (legacy)"
RECENT_USE = timedelta(minutes=4)

ANALYSES = (
    (
        "Checkout 502s after deploy",
        "2026-03-02T10:14:07Z nginx upstream timed out (110: Connection timed out) "
        "while reading response header from upstream, upstream: http://10.0.3.7:8080/pay",
    ),
    (
        "Payment webhook retries",
        "2026-03-02T11:02:44Z WARN stripe-webhook retry 3/5 for evt_1Oa2 (HTTP 500)",
    ),
    (
        "Slow cart queries",
        "2026-03-02T12:30:01Z LOG duration: 2315.442 ms statement: SELECT * FROM cart_items",
    ),
)


def _get_user(email: str) -> User:
    user = User.objects.filter(email=User.objects.normalize_email(email)).first()
    # The demo's own addresses (example domains): nobody's mailbox to confirm them through,
    # so confirmed here, those seeded before confirmation existed too.
    if user is None:
        return User.objects.create_user(email, DEMO_PASSWORD, email_confirmed_at=timezone.now())
    if user.email_confirmed_at is None:
        user.email_confirmed_at = timezone.now()
        user.save(update_fields=["email_confirmed_at"])
    return user


class Command(BaseCommand):
    help = (
        "Create a demo user, organization, projects, keys and analyses (safe to run again). "
        "Development only: refuses to run with DEBUG off unless given --force."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--force",
            action="store_true",
            help="run even with DEBUG off (creates accounts with a published password)",
        )

    def handle(self, *args, force: bool = False, **options):
        if not settings.DEBUG and not force:
            raise CommandError(
                "seed_demo creates accounts with a published password, and DEBUG is off: "
                "this looks like a production database. Run it with DEBUG=true on a "
                "development machine, or pass --force if you really mean it."
            )
        with transaction.atomic():
            user = _get_user(DEMO_EMAIL)
            membership = (
                Membership.objects.select_related("organization")
                .filter(user=user, organization__name=DEMO_ORGANIZATION)
                .first()
            )
            if membership is None:
                organization = create_organization(actor=user, name=DEMO_ORGANIZATION)
                membership = Membership.objects.get(user=user, organization=organization)
            organization = membership.organization
            projects = [self.ensure_project(user, organization, name) for name in DEMO_PROJECTS]
            self.ensure_viewer(membership)
            keys = self.ensure_keys(user, organization, projects[0])
            seed_demo_usage(list(keys.values()))
            self.ensure_analyses(user, projects[0], keys[RECENT_KEY_NAME])
            self.ensure_configuration(projects[0])
        self.say(
            self.style.SUCCESS("Demo data ready.")
            + f"\n  Log in at {settings.SITE_URL}/login/"
            + f"\n    email:    {DEMO_EMAIL}"
            + f"\n    password: {DEMO_PASSWORD}"
            + f"\n  A viewer of {DEMO_ORGANIZATION}: {DEMO_VIEWER_EMAIL}, same password.\n"
        )

    def ensure_project(self, user: User, organization: Organization, name: str) -> Project:
        project = Project.objects.filter(organization=organization, name=name).first()
        return project or create_project(actor=user, organization=organization, name=name)

    def ensure_viewer(self, owner_membership: Membership) -> None:
        viewer = _get_user(DEMO_VIEWER_EMAIL)
        if not Membership.objects.filter(
            user=viewer, organization=owner_membership.organization
        ).exists():
            add_member(actor_membership=owner_membership, email=viewer.email, role=Role.VIEWER)

    def ensure_keys(
        self, user: User, organization: Organization, project: Project
    ) -> dict[str, ApiKey]:
        read_only = [Permission.ANALYSIS_READ, Permission.CONFIG_READ]
        keys = {
            SDK_KEY_NAME: self.ensure_key(
                user, KeyKind.PUBLIC, organization, project, SDK_KEY_NAME, None
            ),
            RECENT_KEY_NAME: self.ensure_key(
                user,
                KeyKind.SECRET,
                organization,
                project,
                RECENT_KEY_NAME,
                [Permission.ANALYSIS_CREATE, Permission.ANALYSIS_READ],
            ),
            REVOKED_KEY_NAME: self.ensure_key(
                user, KeyKind.SECRET, organization, project, REVOKED_KEY_NAME, read_only
            ),
            ORG_KEY_NAME: self.ensure_key(
                user, KeyKind.ORGANIZATION, organization, None, ORG_KEY_NAME, read_only
            ),
        }
        if keys[REVOKED_KEY_NAME].revoked_at is None:
            revoke_key(actor=user, api_key=keys[REVOKED_KEY_NAME])
        # "Last used 4 minutes ago" on every run, however long ago the demo was seeded.
        ApiKey.objects.filter(pk=keys[RECENT_KEY_NAME].pk).update(
            last_used_at=timezone.now() - RECENT_USE
        )
        if not ApiKey.objects.filter(project=project, legacy=True, name=LEGACY_KEY_NAME).exists():
            legacy_key = "tb_" + "".join(
                secrets.choice(keyformat.BASE62_ALPHABET) for _ in range(32)
            )
            import_legacy_keys(
                specs=[
                    LegacyKeySpec(
                        key=legacy_key,
                        project=project,
                        name=LEGACY_KEY_NAME,
                        permissions=[Permission.ANALYSIS_CREATE, Permission.ANALYSIS_READ],
                    )
                ]
            )
        return keys

    def ensure_key(
        self,
        user: User,
        kind: KeyKind,
        organization: Organization,
        project: Project | None,
        name: str,
        permissions: list[str] | None,
    ) -> ApiKey:
        existing = ApiKey.objects.filter(
            organization=organization,
            project=project,
            type=kind.key_type,
            scope=kind.scope,
            legacy=False,
            name=name,
        ).first()
        if existing is not None:
            return existing
        return mint_key(
            actor=user,
            kind=kind,
            organization=organization,
            project=project,
            name=name,
            permissions=permissions,
        ).api_key

    def ensure_analyses(self, user: User, project: Project, ci_key: ApiKey) -> None:
        by_user, by_key = Principal(user=user), Principal(key=ci_key)
        for index, (title, text) in enumerate(ANALYSES):
            if Analysis.objects.filter(project=project, title=title).exists():
                continue
            author = by_key if index == 1 else by_user
            analysis = create_analysis(principal=author, project=project, title=title, input=text)
            if index == 0:
                create_follow_up(
                    principal=by_user,
                    analysis=analysis,
                    question="Did the upstream pool shrink in this deploy?",
                )
                create_feedback(
                    principal=by_user,
                    analysis=analysis,
                    rating="up",
                    comment="Pointed straight at the connection pool.",
                )

    def ensure_configuration(self, project: Project) -> None:
        if not LogSource.objects.filter(project=project, name="Production HTTP intake").exists():
            create_log_source(
                project=project,
                name="Production HTTP intake",
                kind=LogSource.Kind.HTTP,
                settings={"format": "json"},
            )
        if not Channel.objects.filter(project=project, name="On-call email").exists():
            create_channel(
                project=project,
                name="On-call email",
                kind=Channel.Kind.EMAIL,
                target="oncall@example.com",
            )
