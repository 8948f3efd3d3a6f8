"""`manage.py changepassword [username] [--database]`: Django's command, arguments and
prompts, setting the password as the admin's "set password" page does (`store_password`).

Found by an audit: Django's own saved the whole user row it had read before prompting,
writing back an account deactivated or an address changed meanwhile, and told no one (no
email, no audit event, no `sigsentry.audit` line, the sessions left listed as open).
"""

from __future__ import annotations

import getpass

from django.contrib.auth.management.commands import changepassword
from django.core.management.base import CommandError
from django.db import transaction

from apps.accounts.models import User
from apps.accounts.services import hashed_new_password, record_operator_change, store_password
from apps.audit.services import Action, UserAction
from core.errors import ValidationFailed

MAX_TRIES = 3


class Command(changepassword.Command):
    help = (
        "Set a user's password, as an operator does in the admin: every session of the "
        "user ends, they are told by email, their organizations' audit logs record it."
    )

    def handle(self, *args, **options) -> str:
        username = options["username"] or getpass.getuser()
        database = options["database"]
        try:
            user = User.objects.db_manager(database).get_by_natural_key(username)
        except User.DoesNotExist:
            raise CommandError(f"user '{username}' does not exist") from None

        self.stdout.write(f"Changing password for user '{user}'")
        hashed = self._ask_new_password(user)

        with transaction.atomic(using=database):
            # The row as it is now, locked: only the password columns are written over it,
            # and the notice goes to the address it has now.
            user = User.objects.using(database).select_for_update(no_key=True).get(pk=user.pk)
            record_operator_change(Action.MEMBER_PASSWORD_SET, user, actor_user=None)
            store_password(user=user, hashed=hashed, action=UserAction.PASSWORD_SET)
        return f"Password changed successfully for user '{user}'"

    def _ask_new_password(self, user: User) -> str:
        """The new password, typed twice and checked by the validators (`hashed_new_password`),
        hashed; as Django's command, three tries."""
        for _ in range(MAX_TRIES):
            first = _typed("Password: ")
            second = _typed("Password (again): ")
            if first != second:
                self.stdout.write("Passwords do not match. Please try again.")
                continue
            try:
                return hashed_new_password(user=user, new_password=second)
            except ValidationFailed as exc:
                self.stderr.write("\n".join(exc.details["fields"]["password"]))
        raise CommandError(f"Aborting password change for user '{user}' after {MAX_TRIES} attempts")


def _typed(prompt: str) -> str:
    """A password typed at `prompt`, not echoed; an empty one aborts, as in Django's command
    (whose own reader, `_get_pass`, is private: not relied on)."""
    password = getpass.getpass(prompt=prompt)
    if not password:
        raise CommandError("aborted")
    return password
