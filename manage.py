#!/usr/bin/env python
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sigsentry.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        # A missing or bad setting (SECRET_KEY unset, a bad DATABASE_URL) is the operator's
        # to fix, not a bug: one line, not a traceback that opens on a KeyError (a commands
        # audit). Its message never quotes a password (sigsentry/settings.py).
        if "--traceback" in sys.argv:
            raise
        print(f"Configuration error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
