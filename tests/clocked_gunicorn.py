"""gunicorn on a moved clock: the test run's (`pytest --clock`, `before_the_sunset`) or one
a test asks for (`GunicornServer(clock=...)`).

`tests.servers.GunicornServer` runs this instead of gunicorn when the clock is to be
moved: it passes how far the server's clock is to be from the real one, this process
moves its own clock as far (still ticking) before gunicorn starts, and the workers
gunicorn forks inherit it. A token minted by a test on a moved clock then means the
same to the server.
"""

from __future__ import annotations

import os
import sys
import time

import time_machine
from gunicorn.app.wsgiapp import run

if __name__ == "__main__":
    offset = float(os.environ["SIGSENTRY_TEST_CLOCK_OFFSET"])
    time_machine.travel(time.time() + offset, tick=True).start()
    sys.exit(run())
