"""`manage.py reseal_secrets`: every stored secret sealed again under the current SECRET_KEY."""

from __future__ import annotations

from django.core.management.base import CommandError

from core.listing import first_few
from core.management.base import BaseCommand
from core.sealed import ResealCount, reseal_stored

#: Rows read and sealed again per batch, each followed by a line of progress.
BATCH_ROWS = 500


def column_name(count: ResealCount) -> str:
    return f"{count.column.model._meta.label}.{count.column.field}"


class Command(BaseCommand):
    help = (
        "After a new SECRET_KEY (the old one in SECRET_KEY_FALLBACKS): seal every stored "
        "secret the service reads back (two-factor secrets, webhook signing secrets) again "
        "under the current key, so the old key can leave SECRET_KEY_FALLBACKS. Safe to "
        "repeat and to run beside the web processes and workers. Fails, naming the rows, "
        "when a secret opens under no key of SECRET_KEY and SECRET_KEY_FALLBACKS."
    )

    def handle(self, *args, **options):
        unreadable, rows = [], 0
        for count in reseal_stored(batch=BATCH_ROWS, progress=self.say_progress):
            column = count.column
            name = column_name(count)
            self.say(
                f"{name}: {count.resealed} sealed again, {count.current} already under "
                f"SECRET_KEY, {len(count.unreadable)} unreadable."
            )
            unreadable += [f"{column.model._meta.label} {pk}" for pk in count.unreadable]
            rows += count.checked
        if unreadable:
            # The first few rows only: every one was a 165 KB line (a commands audit).
            message = (
                "Sealed under a key that is neither SECRET_KEY nor in SECRET_KEY_FALLBACKS "
                f"(left unchanged): {', '.join(first_few(unreadable))}."
            )
            if len(unreadable) == rows:
                message += (
                    " None opens: SECRET_KEY / SECRET_KEY_FALLBACKS are probably not the "
                    "ones these were sealed under."
                )
            raise CommandError(message)

    def say_progress(self, count: ResealCount) -> None:
        """A line after each batch, at once: a large table took minutes, silent to its end
        (a commands audit). Rows added since the column's count began are counted too."""
        self.say(
            f"{column_name(count)}: {count.checked} of {max(count.total, count.checked)} "
            f"checked, {count.resealed} sealed again…"
        )
        self.stdout.flush()
