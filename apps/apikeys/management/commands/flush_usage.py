"""`manage.py flush_usage`: copy key usage counters to the database and prune old usage, once."""

from __future__ import annotations

import redis
from django.core.management.base import CommandError

from apps.apikeys.usage import flush
from apps.apikeys.usage.flush import COPY_LOCK, flush_usage, prune_usage, resync_usage
from core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Copy the key usage counters touched since the last copy from Redis (REDIS_URL) to "
        "the database, then delete hourly usage older than 48 hours, daily usage older than "
        "90 days and client IPs unseen for 90 days. Safe to repeat and to run alongside the "
        "web processes, which copy at least once a minute by themselves; for cron and "
        "operators (for example before restarting Redis). Without REDIS_URL only this "
        "process's counters exist, so there is nothing to copy. With --resync, every counter "
        "still in Redis is copied (after a restore of the database to an earlier point)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--resync",
            action="store_true",
            help="copy every live counter, not only those touched since the last copy: after "
            "restoring the database, the counts copied since the backup come back (a copy "
            "keeps the largest count per bucket, so nothing counts twice)",
        )

    def handle(self, *args, resync: bool = False, **options):
        copy = resync_usage if resync else flush_usage
        try:
            copied = copy(wait=False)
            if copied is None:  # said before the wait, which was silent (a commands audit)
                self.say(
                    f"Waiting for a usage copy already running (lock {COPY_LOCK}), at most "
                    f"{flush.COPY_LOCK_SECONDS} s…"
                )
                self.stdout.flush()
                copied = flush_usage()  # what `copy` marked stays marked for this one
        except redis.RedisError as exc:
            raise CommandError(f"The usage store (REDIS_URL) is unreachable: {exc}") from exc
        if copied is None:  # waited the lock's whole time: never "Copied None" and success
            raise CommandError(
                "Another copy held the usage copy lock (ss:u:copying) for "
                f"{flush.COPY_LOCK_SECONDS} s; nothing was copied. Run it again."
            )
        pruned = prune_usage()
        self.say(f"Copied {copied} usage counter(s); pruned {pruned} old usage row(s).")
