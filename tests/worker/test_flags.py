"""`run_worker`'s flags: a number of seconds above zero and at most a year, or the command
stops at once."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command


@pytest.mark.parametrize("flag", ["--poll-interval", "--checks-every", "--urgent-every"])
@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf", "soon", "1e308", "31708801"])
def test_a_flag_that_is_not_a_positive_number_of_seconds_is_refused_before_starting(flag, value):
    # Before: --poll-interval -1 ran until the first idle loop, then crashed (time.sleep).
    with pytest.raises(CommandError, match="seconds"):
        call_command("run_worker", "--once", flag, value)


def test_once_with_the_database_unavailable_fails_instead_of_retrying_for_ever(monkeypatch):
    """Found by a commands audit: `--once` (for cron) retried every few seconds for ever
    when the database was down or not migrated, and runs piled up."""
    from django.db import OperationalError

    from apps.notifications.management.commands import run_worker

    def unavailable(**_every):
        raise OperationalError("connection refused")

    monkeypatch.setattr(run_worker, "enqueue_due", unavailable)
    monkeypatch.setattr(run_worker, "OUTAGE_PAUSE_SECONDS", 0.01)

    with pytest.raises(
        CommandError, match=r"^database \(DATABASE_URL\) (unreachable|failed): connection refused$"
    ):
        call_command("run_worker", "--once")
