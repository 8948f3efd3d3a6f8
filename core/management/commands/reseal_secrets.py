"""`manage.py reseal_secrets`: every stored secret sealed again under the current SECRET_KEY."""

from __future__ import annotations

from django.core.management.base import CommandError

from core.listing import first_few
from core.management.base import BaseCommand
from core.sealed import reseal_stored


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
        for count in reseal_stored():
            column = count.column
            name = f"{column.model._meta.label}.{column.field}"
            self.say(
                f"{name}: {count.resealed} sealed again, {count.current} already under "
                f"SECRET_KEY, {len(count.unreadable)} unreadable."
            )
            unreadable += [f"{column.model._meta.label} {pk}" for pk in count.unreadable]
            rows += count.resealed + count.current + len(count.unreadable)
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
