"""`python manage.py send_notifications`: the scheduled checks, once (for cron and operators).

Idempotent: every reminder is recorded under a unique key before it is sent,
so running it twice (or beside running workers) sends nothing twice.
"""

from __future__ import annotations

from apps.notifications.checks import run_all_checks
from core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run the notification checks once: expiring, unused, leaked and legacy keys."

    def handle(self, *args, **options):
        self.say(str(run_all_checks()))
