"""The rate-limit check sent ahead of the key's lookup.

The check is sent before the key's lookup and read after it, so the two round trips
overlap (bench/README.md: +342 µs -> +93-160). Its key and limit are those this process
last read for the credential: a guess, held against the row before use, and given back
(`give_back`) when the request never reaches the limit's step. A request the guess
says may be refused before that step (by the key's origins or IPs, its projects, a view
no key may use, or, for an org key, a project this process has not yet seen in the key's
organization: only a query tells) reserves nothing. A reservation held by a request that
is then refused would, until given back, count against the key's concurrent requests:
one of them could get a 429 with budget left (SPEC §4.10: a refused request uses none),
and a stolen key could do that on purpose with foreign project ids. Such a request costs
one round trip (the window read for its headers, with the failure's count where
authentication refused it: `steps.RefusedKeyWindow`), not two. What the guess cannot
know: a key changed on another process since this one read it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import redis

from apps.apikeys.gate import batch, window
from apps.apikeys.gate.store import fail_open
from apps.apikeys.gate.window import LimitState
from core import failopen
from core.net import client_refusal
from core.sharedredis import redis_client

if TYPE_CHECKING:
    from apps.apikeys.selectors import KeyRecord

#: credential digest -> the record this process last read of an active rate-limited key
_limits_seen: dict[str, KeyRecord] = {}
_limits_seen_lock = threading.Lock()
LIMITS_SEEN_KEPT = 10_000
RESERVATION = "sigsentry.rate_limit_reservation"


@dataclass(slots=True)
class Reservation:
    """A rate-limit check sent before the key's lookup (see above)."""

    key_id: str
    limit: tuple[int, int]
    pool: redis.ConnectionPool
    connection: redis.connection.Connection | None
    state: LimitState | None = None  # Redis's answer, once read
    taken_ms: int = 0  # the time it added to the key's window (0: none)
    settled: bool = False  # used at the limit's step, or given back

    def answers(self, key) -> bool:
        """Whether Redis's answer is this key's check with the key's current limit."""
        return (
            self.state is not None
            and self.key_id == str(key.id)
            and self.limit == window.key_limit(key)
        )


def _active(key: KeyRecord) -> bool:
    return key.revoked_at is None and (key.expires_at is None or key.expires_at > datetime.now(UTC))


def remember_limit(digest: str, key: KeyRecord | None) -> None:
    """After the lookup (`key` None when there is no such key): the guess for the
    credential's next request on this process. Only active rate-limited keys are guessed."""
    limit = window.key_limit(key)
    if limit is None and digest not in _limits_seen:
        return  # the common case, without the lock
    with _limits_seen_lock:
        if limit is None or not _active(key):
            _limits_seen.pop(digest, None)
            return
        if digest not in _limits_seen and len(_limits_seen) >= LIMITS_SEEN_KEPT:
            del _limits_seen[next(iter(_limits_seen))]  # the oldest guess
        _limits_seen[digest] = key


def _may_be_refused_early(request, guess: KeyRecord) -> bool:
    """Whether the guess says this request may stop before the limit's step (SPEC §4.10's
    order: expired, origin, IP, project; and views no key may use)."""
    if not _active(guess):
        return True
    if client_refusal(request, guess.allowed_origins, guess.allowed_ips) is not None:
        return True
    view = (getattr(request, "parser_context", None) or {}).get("view")
    may_refuse = getattr(view, "may_refuse_key_early", None)  # core.api.ApiView's
    return may_refuse is not None and may_refuse(guess)


def reserve_limit(request, digest: str) -> None:
    """Before the lookup: send the rate-limit check of the key this credential named last
    time (a guess), to be read by `collect_reservation` after the lookup."""
    guess = _limits_seen.get(digest)
    client = redis_client()
    if (
        guess is None
        or client is None
        or failopen.given_up()
        or _may_be_refused_early(request, guess)
    ):
        return
    pool = client.connection_pool
    try:
        connection = pool.get_connection()
    except redis.RedisError:
        fail_open("rate limit not enforced, key use not counted")
        return
    key_id, limit = str(guess.id), window.key_limit(guess)
    try:
        connection.send_command(
            "EVALSHA",
            window.limit_script(client).sha,
            2,
            *window.window_keys(key_id),
            *window.limit_args(limit, peek=False, give_back=0, guess=True),
        )
    except BaseException as exc:
        pool.release(connection)  # disconnected by redis-py: nothing left unread
        if not isinstance(exc, redis.RedisError):
            raise
        fail_open("rate limit not enforced, key use not counted")
        return
    request.META[RESERVATION] = Reservation(key_id, limit, pool, connection)


def collect_reservation(request) -> None:
    """After the lookup (even a failed one): read Redis's answer to `reserve_limit`."""
    reservation = request.META.get(RESERVATION)
    if reservation is None or reservation.connection is None:
        return
    connection, reservation.connection = reservation.connection, None
    try:
        reply = connection.read_response()
    except redis.exceptions.NoScriptError:
        return  # a Redis without the script (restarted): the limit's step loads it
    except redis.RedisError:
        fail_open("rate limit not enforced, key use not counted")
        return
    except BaseException:
        connection.disconnect()  # its answer unread: never handed to another command
        raise
    finally:
        reservation.pool.release(connection)
    reservation.state = window.limit_state(reservation.limit[0], reply)
    reservation.taken_ms = int(reply[4])


def give_back(reservation: Reservation, limit: tuple[int, int] | None = None) -> LimitState | None:
    """Return the time `reservation` took to its key's window, answering the window under
    `limit` (the row's; None: read under the guess). When Redis already failed this
    request, this process's next batch sends it instead, so the request does not wait."""
    if failopen.given_up():
        batch.give_back_later(reservation.key_id, reservation.limit, reservation.taken_ms)
        return None
    return window.check_limit(
        reservation.key_id,
        limit or reservation.limit,
        peek=True,
        give_back=reservation.taken_ms,
        guess=limit is None,
    )


def settle(request) -> Reservation | None:
    """The request's reservation, now settled, or None when there is none left to settle."""
    reservation = request.META.get(RESERVATION)
    if reservation is None or reservation.settled:
        return None
    reservation.settled = True
    return reservation
