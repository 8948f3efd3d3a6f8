"""`python manage.py run_worker`: webhook deliveries, emails and the scheduled checks.

The one long-running process besides the web server; run as many as you like.
Tasks live in the database (django-tasks' ORM backend): a worker claims one
with SELECT … FOR UPDATE SKIP LOCKED on PostgreSQL (an exclusive transaction on
SQLite), so two workers never run the same task. Between two tasks (at most once
a second) it queues the periodic checks that are due
(apps.notifications.tasks.enqueue_due): the urgent ones, due while a delivery
waited on a slow endpoint, run next, not after a round of slow deliveries.

SIGTERM or SIGINT: the task being run is finished, then the worker exits; a
second signal stops it at once.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import Counter
from datetime import timedelta

from django.core.management.base import CommandError
from django.db import DatabaseError, close_old_connections
from django.utils.crypto import get_random_string
from django_tasks import TaskResultStatus
from django_tasks.signals import task_finished
from django_tasks_db.management.commands.db_worker import Worker
from django_tasks_db.models import DBTaskResult

from apps.notifications.tasks import CHECKS_EVERY, URGENT_EVERY, enqueue_due
from core import failopen
from core.listing import first_few
from core.management.base import BaseCommand, database_error_line
from core.management.flags import YEAR_SECONDS, seconds_at_most

logger = logging.getLogger("sigsentry.worker")

#: The shortest time between two looks at the schedules (each is a few queries).
SCHEDULES_EVERY_SECONDS = 1.0
OUTAGE_PAUSE_SECONDS = 5.0


seconds = seconds_at_most(YEAR_SECONDS)


def task_worker(worker_id: str, *, max_tasks: int | None) -> Worker:
    """django-tasks' worker for the default queue: runs what is ready, then returns."""
    return Worker(
        queue_names=["default"],
        interval=0,
        batch=True,
        backend_name="default",
        startup_delay=False,
        max_tasks=max_tasks,
        worker_id=worker_id,
        excluded_queue_names=[],
    )


class FinishedTasks:
    """How many tasks this process finished, and how many failed by task path (django-tasks'
    `task_finished` signal, sent by its worker after each task). A count per path: bounded
    however long it runs."""

    def __init__(self) -> None:
        self.ran = 0
        self.failed: Counter[str] = Counter()

    def __call__(self, sender, task_result, **kwargs) -> None:
        self.ran += 1
        if task_result.status == TaskResultStatus.FAILED:
            self.failed[task_result.task.module_path] += 1


class Outage:
    """Whether the database is down, said once when it goes (one line, without traceback)
    and once when it is back: a commands audit found a traceback every OUTAGE_PAUSE_SECONDS
    for as long as it was down."""

    def __init__(self) -> None:
        self.down = False

    def failed(self, exc: DatabaseError) -> None:
        if not self.down:
            self.down = True
            logger.error(
                "worker: %s; trying again every %g s",
                database_error_line(exc),
                OUTAGE_PAUSE_SECONDS,
            )

    def passed(self) -> None:
        if self.down:
            self.down = False
            logger.info("worker: database reachable again")


class Command(BaseCommand):
    help = "Run the worker: webhook deliveries, notification emails and scheduled checks."

    def add_arguments(self, parser):
        parser.add_argument(
            "--poll-interval",
            type=seconds,
            default=1.0,
            help="Seconds to wait when no task is ready (default 1).",
        )
        parser.add_argument(
            "--checks-every",
            type=seconds,
            default=CHECKS_EVERY.total_seconds(),
            help="Seconds between the expiry/unused/legacy checks (default 300).",
        )
        parser.add_argument(
            "--urgent-every",
            type=seconds,
            default=URGENT_EVERY.total_seconds(),
            help="Seconds between leak-report and disabled-webhook checks (default 15).",
        )
        parser.add_argument(
            "--once",
            action="store_true",
            help=(
                "Queue what is due, run every ready task, then exit (for cron and tests); "
                "exits 1 if a task failed."
            ),
        )

    def handle(self, *args, poll_interval, checks_every, urgent_every, once, **options):
        worker_id = f"{socket.gethostname()[:40]}-{os.getpid()}-{get_random_string(8)}"
        every = {
            "checks_every": timedelta(seconds=checks_every),
            "urgent_every": timedelta(seconds=urgent_every),
        }
        logger.info("worker %s started", worker_id)
        finished = FinishedTasks()
        task_finished.connect(finished, weak=False)
        outage = Outage()
        try:
            looked_at = float("-inf")
            while True:
                failopen.new_request()  # a Redis that gave up during the last task is tried again
                worker = task_worker(worker_id, max_tasks=1)
                worker.configure_signals()
                try:
                    if time.monotonic() - looked_at >= SCHEDULES_EVERY_SECONDS:
                        enqueue_due(**every)
                        looked_at = time.monotonic()
                    worker.run()
                    more = worker.running and DBTaskResult.objects.ready().exists()
                except DatabaseError as exc:
                    if once:  # cron's run must end, and say it failed (a commands audit: it
                        # retried for ever, and runs piled up): one line, by the base
                        raise
                    outage.failed(exc)  # before the connection is closed: it tells "unreachable"
                    close_old_connections()
                    time.sleep(OUTAGE_PAUSE_SECONDS)
                    continue
                outage.passed()
                if not worker.running or (once and not more):
                    break
                if not more:
                    time.sleep(poll_interval)
        finally:
            task_finished.disconnect(finished)
            # Also when django-tasks' signal handler ends an idle worker with SystemExit (a
            # soak audit: the line never appeared after a SIGTERM between tasks).
            logger.info("worker %s stopped", worker_id)
        if once and finished.failed:
            # Exit 1, for cron: a failed task went unnoticed (a commands audit).
            failed = sorted(finished.failed.items())
            named = [f"{path} ({n})" if n > 1 else path for path, n in failed]
            raise CommandError(
                f"ran {finished.ran} task(s), {finished.failed.total()} failed: "
                f"{', '.join(first_few(named))} (their tracebacks are in the task results)"
            )
