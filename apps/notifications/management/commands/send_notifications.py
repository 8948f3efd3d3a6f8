"""`python manage.py send_notifications`: the scheduled checks, once (for cron and operators).

Idempotent: every reminder is recorded under a unique key before it is sent,
so running it twice (or beside running workers) sends nothing twice. Exits 1 when an
email failed (a later run tries it again), so that cron sees it.
"""

from __future__ import annotations

from django.core.management.base import CommandError

from apps.notifications.checks import run_all_checks
from core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Run the notification checks once: expiring, unused, leaked and legacy keys, and "
        "disabled webhooks; then send the emails still pending."
    )

    def handle(self, *args, **options):
        report = run_all_checks()
        self.say(str(report))
        if report.email_failures:
            # Exit 1, for cron: it exited 0 after failed emails (a commands audit).
            raise CommandError(f"{report.email_failures} email(s) failed; they are retried later")
