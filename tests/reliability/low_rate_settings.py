"""Test settings with low throttle limits, for gunicorn servers started by the throttling tests.

Long windows, so that a test never straddles a window boundary.
"""

from sigsentry.test_settings import *  # noqa: F403
from sigsentry.test_settings import THROTTLE_RATES

LOW_LIMIT = 4
THROTTLE_RATES = {scope: (LOW_LIMIT, 3600) for scope in THROTTLE_RATES}
