"""The suite's own server and worker processes (tests/servers.py, tests/outbound.py): each
writes its log through a descriptor of its own, and the test process closes its copy
rather than leaving it to be collected (a ResourceWarning per process started, seen with
-W default)."""

from __future__ import annotations

import gc
import warnings

import pytest

from tests.outbound import WorkerProcess
from tests.servers import GunicornServer

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def unclosed(start) -> tuple[object, list[str]]:
    """What `start()` returned, and the ResourceWarnings of what it left open."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        process = start()
        gc.collect()
    return process, [str(w.message) for w in caught if w.category is ResourceWarning]


def test_a_started_server_leaves_no_log_descriptor_open():
    server, left_open = unclosed(GunicornServer(workers=1).start)
    try:
        assert not [message for message in left_open if str(server.log_path) in message]
        assert server.process.poll() is None
    finally:
        server.stop()


def test_a_started_worker_leaves_no_log_descriptor_open():
    worker, left_open = unclosed(WorkerProcess().start)
    try:
        assert not [message for message in left_open if str(worker.log_path) in message]
        worker.wait_started()
    finally:
        worker.terminate()
