"""`python manage.py housekeeping`: the worker's daily housekeeping, once (for cron).

Without a worker nothing else prunes ended sessions (their IPs and user agents),
finished invitations (the invitee's address), old webhook events or task results:
run it daily from cron then. Beside running workers it is safe: each step deletes
what is past its age and may run twice.
"""

from __future__ import annotations

from apps.notifications.tasks import housekeeping
from core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Prune what is past its retention (webhook events, task results, ended sessions, "
        "expired refresh tokens, finished invitations, the last client IP and user agent of "
        "keys unused for 90 days, reminders' recipients once given up) and fold idle keys' "
        "per-IP usage rows, as the worker does daily."
    )

    def handle(self, *args, **options):
        self.say(housekeeping.call())
