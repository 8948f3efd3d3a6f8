"""The rate limit's window at its edges (SPEC §4.10): across every process, at most `n`
requests with a key succeed in any `s`-second window, and the rest are refused.

Each step is held against a model built from the window's own clock (the `now_ms`
each answer reports: Redis's clock, or this process's without Redis): a request is
admitted exactly when fewer than `n` admitted requests lie in the `s` seconds before
it, and the answer's remaining budget and reset time follow from the same list.
"""

from __future__ import annotations

import random
import time
import uuid

import pytest

from apps.apikeys.gate.store import local_store
from apps.apikeys.gate.window import LimitState, check_limit
from core.sharedredis import redis_client

LIMIT_N = 3


class Window:
    """What the answers must say, from the times of the requests admitted so far."""

    def __init__(self, limit_n: int, limit_ms: int) -> None:
        self.limit_n, self.limit_ms = limit_n, limit_ms
        self.admitted: list[int] = []

    def check(self, state: LimitState, *, peek: bool = False) -> None:
        live = [t for t in self.admitted if t > state.now_ms - self.limit_ms]
        expect_allowed = len(live) < self.limit_n
        if not peek and expect_allowed:
            live.append(state.now_ms)
            self.admitted.append(state.now_ms)
        assert peek or state.allowed is expect_allowed, (state, live)  # a peek uses none
        assert state.remaining == self.limit_n - len(live), (state, live)
        frees = live[max(0, len(live) - self.limit_n)] if live else state.now_ms
        assert state.reset_ms == frees + self.limit_ms, (state, live)


def test_the_redis_window_admits_exactly_n_in_any_window_at_its_edges(settings):
    """Requests land just before and just after the moment the oldest admitted one
    leaves the window (1 s here), as Redis's clock tells it, with reads in between."""
    if not settings.REDIS_URL:
        pytest.skip("the shared window needs REDIS_URL; the local one is tested below")
    key_id, rng = str(uuid.uuid4()), random.Random(1604)
    window = Window(LIMIT_N, 1000)
    state = check_limit(key_id, (LIMIT_N, 1))
    window.check(state)
    for _ in range(6):
        for _ in range(rng.choice((1, 1, 2, 4))):
            state = check_limit(key_id, (LIMIT_N, 1))
            window.check(state)
        peeked = check_limit(key_id, (LIMIT_N, 1), peek=True)
        window.check(peeked, peek=True)
        # Next: a few ms either side of the oldest admitted request's expiry.
        edge_ms = peeked.reset_ms - peeked.now_ms + rng.choice((-25, -8, 3, 12, 30))
        time.sleep(max(0, edge_ms) / 1000)
    assert len(window.admitted) > LIMIT_N  # the window moved on


def test_the_redis_window_drops_exactly_the_times_that_left_however_many_at_once(settings):
    """Fifty admitted in five bursts; later requests each find a different number of them
    gone (none, one burst, several, all), which the log finds by galloping and bisection."""
    if not settings.REDIS_URL:
        pytest.skip("the shared window needs REDIS_URL; the local one is tested below")
    key_id, limit = str(uuid.uuid4()), (50, 1)
    window = Window(50, 1000)
    for _ in range(5):
        for _ in range(10):
            window.check(check_limit(key_id, limit))
        time.sleep(0.12)
    for wait_ms in (0, 350, 130, 260, 600):
        time.sleep(wait_ms / 1000)
        for _ in range(3):
            window.check(check_limit(key_id, limit))
    assert len(window.admitted) > 50  # the first bursts left the window and made room
    # A read keeps the log a window longer than its newest time: later, every time
    # kept has left at once.
    time.sleep(0.6)
    window.check(check_limit(key_id, limit, peek=True), peek=True)
    time.sleep(0.5)
    for _ in range(3):
        window.check(check_limit(key_id, limit))


@pytest.mark.parametrize("seed", range(5))
def test_the_local_window_admits_exactly_n_in_any_window_at_its_edges(seed):
    """Without Redis (the SQLite demo) each process holds the window: the same rule on
    a clock the test sets, to the millisecond either side of each edge."""
    store, key_id, rng = local_store(), str(uuid.uuid4()), random.Random(seed)
    limit_ms = rng.choice((1000, 60_000))
    window, now_ms = Window(LIMIT_N, limit_ms), 1_700_000_000_000
    for _ in range(200):
        peek = rng.random() < 0.2
        allowed, remaining, reset_ms, at = store.limit(key_id, LIMIT_N, limit_ms, peek, now_ms)
        window.check(LimitState(bool(allowed), LIMIT_N, remaining, reset_ms, at), peek=peek)
        now_ms = rng.choice((now_ms, now_ms + 1, reset_ms - 1, reset_ms, reset_ms + 1))


def test_the_redis_window_holds_an_admitted_request_in_about_ten_bytes(settings):
    """A window's memory grows with the requests it admits (README → Memory): a list of
    times, ~10 bytes each, where a sorted set took ~115 once past 128 entries."""
    if not settings.REDIS_URL:
        pytest.skip("the shared window needs REDIS_URL")
    key_id = str(uuid.uuid4())
    states = [check_limit(key_id, (1000, 60)) for _ in range(1000)]

    assert all(state.allowed for state in states)
    assert redis_client().memory_usage(f"ss:rlog:{key_id}") < 16 * 1000


def test_a_lowered_limit_tells_when_a_place_frees_not_when_the_oldest_leaves(settings):
    """Five times in the log and the limit lowered to two: a place frees when the fourth
    oldest leaves (found by a review: Retry-After named the oldest's, and a client that
    waited for it was refused again)."""
    store, key_id, start = local_store(), str(uuid.uuid4()), 1_700_000_000_000
    for i in range(5):
        assert store.limit(key_id, 5, 60_000, False, start + i * 1000)[0] == 1
    allowed, _remaining, reset_ms, _now = store.limit(key_id, 2, 60_000, False, start + 10_000)
    assert (allowed, reset_ms) == (0, start + 3000 + 60_000)
    assert store.limit(key_id, 2, 60_000, False, reset_ms - 1)[0] == 0
    assert store.limit(key_id, 2, 60_000, False, reset_ms)[0] == 1
    if not settings.REDIS_URL:
        return
    times = [check_limit(key_id, (5, 60)) for _ in range(5)]
    assert all(state.allowed for state in times)
    refused = check_limit(key_id, (2, 60))
    fourth = int(redis_client().lindex(f"ss:rlog:{key_id}", 3))
    assert (refused.allowed, refused.reset_ms) == (False, fourth + 60_000)
