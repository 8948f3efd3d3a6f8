"""`manage.py seed_demo`: a demo user, organization and projects for a first look. Idempotent."""

from __future__ import annotations

from django.core.management.base import BaseCommand
from django.db import transaction

from apps.accounts.models import User
from apps.orgs.models import Membership, Organization
from apps.orgs.services import organization_create, project_create
from apps.projects.models import Project

DEMO_EMAIL = "demo@sigsentry.dev"
DEMO_PASSWORD = "sigsentry-demo-2026"
DEMO_ORGANIZATION = "Demo Org"
DEMO_PROJECTS = ("Checkout Service", "Mobile App")


class Command(BaseCommand):
    help = "Create a demo user, organization and projects (safe to run again)."

    def handle(self, *args, **options):
        with transaction.atomic():
            user = User.objects.filter(email__iexact=DEMO_EMAIL).first()
            if user is None:
                user = User.objects.create_user(DEMO_EMAIL, DEMO_PASSWORD)
            membership = (
                Membership.objects.select_related("organization")
                .filter(user=user, organization__name=DEMO_ORGANIZATION)
                .first()
            )
            if membership is None:
                organization = organization_create(actor=user, name=DEMO_ORGANIZATION)
            else:
                organization = membership.organization
            for name in DEMO_PROJECTS:
                if not Project.objects.filter(organization=organization, name=name).exists():
                    project_create(actor=user, organization=organization, name=name)
            self.seed_extras(user, organization)
        self.stdout.write(
            self.style.SUCCESS("Demo data ready.")
            + f"\n  Log in at /login/ as {DEMO_EMAIL} with password {DEMO_PASSWORD}\n"
        )

    def seed_extras(self, user: User, organization: Organization) -> None:
        """Keys, analyses and legacy keys for the demo (grows with the product)."""
