"""`manage.py reapply_after_restore --since <moment> [FILE|-]`: re-apply what a restore to an
earlier point undid, read from the `sigsentry.audit` log lines (`sigsentry.reapply`)."""

from __future__ import annotations

import argparse
import sys
from contextlib import nullcontext
from datetime import datetime

from django.core.management.base import CommandError

from core.management.base import BaseCommand
from sigsentry.reapply import for_the_operator, parse_moment, read_undone, steps


def utc_moment(text: str) -> datetime:
    """An argparse type: an ISO 8601 moment (UTC unless it says otherwise)."""
    try:
        return parse_moment(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 moment (2026-12-07T08:00:00Z): {text!r}"
        ) from None


class Command(BaseCommand):
    help = (
        "After a restore to an earlier point, before opening it to traffic: read the service's "
        "log (FILE, or - for standard input: the JSON lines, other lines skipped) and, for the "
        "sigsentry.audit lines from --since on (the backup's time, or earlier: nothing is done "
        "twice), revoke again the keys revoked since, revoke the keys rolled since (their "
        "successors are gone with the restore), delete again the webhooks deleted since, each "
        "recorded as the system's with a reason. Lists what needs a person: users whose "
        "password, two-factor or sessions changed since, organizations whose new keys are "
        "gone, keys whose guardrails changed since. Safe to repeat."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("log", nargs="?", default="-", metavar="FILE|-")
        parser.add_argument(
            "--since",
            required=True,
            type=utc_moment,
            help="the backup's moment, ISO 8601 (UTC unless an offset is given)",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="say what would be done; change nothing"
        )

    def handle(self, *args, log: str, since: datetime, dry_run: bool, **options):
        try:
            with nullcontext(sys.stdin) if log == "-" else open(log, errors="replace") as lines:
                read, undone = read_undone(lines, since)
        except OSError as exc:
            raise CommandError(f"Cannot read the log {log}: {exc.strerror or exc}") from exc
        source = "standard input" if log == "-" else log
        if not read:
            raise CommandError(
                f"No sigsentry.audit line in {source}: give the service's JSON log, not another."
            )
        planned = steps(undone)
        for step in planned:
            if dry_run:
                self.stdout.write(step.planned)  # a dry run's plan is all it gives: even -v 0
            else:
                step.run()
                self.say(step.done)
        for line in for_the_operator(undone):
            self.stdout.write(line)  # only a person can do it: printed even with -v 0
        verb = "would re-apply" if dry_run else "re-applied"
        self.say(
            f"{undone.lines} audit line(s) from {since.isoformat()} on in {source}; "
            f"{verb} {len(planned)} change(s)."
        )
