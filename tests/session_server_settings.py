"""Settings for the session's shared gunicorn (`gunicorn_server` in tests/conftest.py) when
its throttle counters outlive the tests: without Redis.

Every test reaches that server from 127.0.0.1. With REDIS_URL the server counts in Redis,
which each test empties (`_clear_cache`), so the production rates apply test by test.
Without it, each worker counts in its own memory, which no test can empty: the suite's
logins (39 in a run) then met `login_ip`'s 30 per 5 minutes or not, by which worker took
them and where the window fell. Here the per-client scopes hold a whole session; the
throttles themselves are tested against servers of their own
(tests/security/test_review_findings.py, tests/reliability/test_throttling.py) and in
process.
"""

from sigsentry.test_settings import *  # noqa: F403
from sigsentry.test_settings import THROTTLE_RATES

# Scopes counted per client address end in "_ip" (`core.throttling.is_client_scope`).
THROTTLE_RATES = {
    scope: (limit * 100 if scope.endswith("_ip") else limit, period)
    for scope, (limit, period) in THROTTLE_RATES.items()
}
