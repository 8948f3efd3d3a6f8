"""Test settings with low throttle limits, for gunicorn servers started by the throttling tests.

One-hour windows; the throttling tests start these servers at the first second of an
hour (`start_server(clock=WINDOW_START)`), so no window boundary passes mid-test.
"""

from sigsentry.test_settings import *  # noqa: F403
from sigsentry.test_settings import THROTTLE_RATES

LOW_LIMIT = 4
THROTTLE_RATES = {scope: (LOW_LIMIT, 3600) for scope in THROTTLE_RATES}
