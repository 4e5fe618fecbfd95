"""Riding out a database outage: retry a unit of work on connection errors, for a window.

A campaign driver's units of work (poll, dispatch, generate, record) are idempotent: conditional
state transitions, idempotency keys, rounds that are a no-op when written twice with the same
content. So when the database connection is lost (:class:`~storage.errors.DatabaseUnreachable`,
or a raw driver error that :func:`storage.engine.is_connection_error` recognises), the unit is
run again, after an exponential backoff with jitter, until it succeeds or ``window_s`` seconds
have passed since the outage was first seen. Each wait is a WARNING naming the campaign, what
was being done and the time elapsed out of the window; past the window
:class:`DatabaseOutage` is raised, with the command that resumes the campaign.

The engine's pool pings every connection on checkout (``pool_pre_ping``) and SQLAlchemy
invalidates the pool on a disconnect error, so the first attempt after the server is back gets a
fresh connection.

    >>> retry = OutageRetry(window_s=120, campaign="c1")              # doctest: +SKIP
    >>> outcome = retry.call(dispatcher.poll, "polling the oracle")   # doctest: +SKIP
"""
from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError

from storage.engine import is_connection_error
from storage.errors import DatabaseUnreachable

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Seconds a campaign waits for its database before its driver gives up (``storage.outage_window_s``).
DEFAULT_WINDOW_S = 120.0
#: The largest window accepted: a day (a driver waiting longer is better restarted by an operator).
MAX_WINDOW_S = 86_400.0


class DatabaseOutage(DatabaseUnreachable):
    """The database stayed unreachable longer than the outage window; the driver stops."""


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` means the database connection was lost or could not be made (worth
    retrying), as opposed to a refused or malformed statement."""
    if isinstance(exc, DatabaseOutage):
        return False  # an inner unit already gave up: the window is spent
    if isinstance(exc, DatabaseUnreachable):
        return True
    return isinstance(exc, DBAPIError) and is_connection_error(exc)


def check_window(window_s: float, *, field: str = "storage.outage_window_s") -> float:
    """``window_s`` as a float in ``[0, MAX_WINDOW_S]``; else ``ValueError`` naming ``field``."""
    try:
        value = float(window_s)
    except (TypeError, ValueError):
        raise ValueError(f"{field}: expected a number of seconds, got {window_s!r}") from None
    if not math.isfinite(value) or not 0 <= value <= MAX_WINDOW_S:
        raise ValueError(f"{field}: must be between 0 and {MAX_WINDOW_S:g} seconds, got {window_s!r}")
    return value


class OutageRetry:
    """Runs units of work through database outages (see the module docstring).

    Args:
        window_s: how long one outage may last before :class:`DatabaseOutage` (0: at once).
        campaign: named in every warning and in the give-up message.
        first_delay_s / max_delay_s: the backoff: ``first * 2**n`` capped at ``max``, times a
            random factor in [0.5, 1] (jitter: drivers of many campaigns do not retry in step).
        should_stop: asked while waiting; True ends the wait by re-raising the error (a service
            shutting down does not wait out the window).
        on_recovered: called after a unit succeeded following a failure (caches rebuilt).
        resume_command: what the give-up message tells the operator to run (default
            ``tiltloop resume CAMPAIGN``).
        enabled: False runs each unit once, errors unchanged (SQLite: a file has no connection
            to lose, and its "unable to open" / "readonly" errors are not outages to wait out).
        clock / sleep / seed: injectable for tests.
    """

    def __init__(self, window_s: float = DEFAULT_WINDOW_S, *, campaign: str,
                 first_delay_s: float = 0.25, max_delay_s: float = 5.0,
                 should_stop: Callable[[], bool] | None = None,
                 on_recovered: Callable[[], None] | None = None,
                 resume_command: str | None = None, enabled: bool = True,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, seed: int | None = None) -> None:
        self.window_s = check_window(window_s)
        self.campaign = campaign
        self.first_delay_s = first_delay_s
        self.max_delay_s = max_delay_s
        self.should_stop = should_stop
        self.on_recovered = on_recovered
        self.resume_command = resume_command or f"tiltloop resume {campaign}"
        self.enabled = enabled
        self._clock = clock
        self._sleep = sleep
        self._rng = random.Random(seed)
        #: outages ridden out so far, and retries in all (the bench and tests read them)
        self.outages = 0
        self.retries = 0

    def call(self, unit: Callable[[], T], doing: str) -> T:
        """Run ``unit`` (retried on connection errors within the window); ``doing`` says what it
        does, in words ("polling the oracle and recording results").

        Raises:
            DatabaseOutage: the database stayed unreachable for ``window_s``.
            Exception: any other error of ``unit``, unchanged.
        """
        if not self.enabled:
            return unit()
        started: float | None = None
        attempt = 0
        while True:
            try:
                result = unit()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                now = self._clock()
                if started is None:
                    started = now
                    self.outages += 1
                elapsed = now - started
                if elapsed >= self.window_s:
                    raise DatabaseOutage(self._give_up_message(doing, elapsed, exc)) from exc
                delay = min(self.max_delay_s, self.first_delay_s * 2 ** attempt)
                delay = min(delay * self._rng.uniform(0.5, 1.0), self.window_s - elapsed)
                attempt += 1
                self.retries += 1
                log.warning("campaign %s: the database is unreachable while %s (%s); retrying in "
                            "%.1f s (%.1f s of the %g s outage window, storage.outage_window_s)",
                            self.campaign, doing, _first_line(exc), delay, elapsed, self.window_s,
                            extra={"campaign": self.campaign})
                self._wait(delay, exc)
                continue
            if started is not None:
                log.warning("campaign %s: the database answers again after %.1f s; %s went on",
                            self.campaign, self._clock() - started, doing,
                            extra={"campaign": self.campaign})
                if self.on_recovered is not None:
                    self.on_recovered()
            return result

    def _wait(self, delay: float, exc: Exception) -> None:
        """Sleep ``delay`` in short slices, re-raising ``exc`` when asked to stop."""
        end = self._clock() + delay
        while True:
            if self.should_stop is not None and self.should_stop():
                raise exc
            left = end - self._clock()
            if left <= 0:
                return
            self._sleep(min(left, 0.2))

    def _give_up_message(self, doing: str, elapsed: float, exc: BaseException) -> str:
        return (f"campaign {self.campaign}: the database stayed unreachable for {elapsed:.1f} s "
                f"while {doing} (storage.outage_window_s = {self.window_s:g}); this driver stops. "
                f"Nothing is lost: every query sent is recorded or is found again by its "
                f"idempotency key. Once the database is back, `{self.resume_command}` "
                f"continues the campaign. Last error: {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    """The driver's reason (``connection refused``…) without the hints of the mapped message."""
    cause = exc.__cause__ if isinstance(exc.__cause__, DBAPIError) else exc
    lines = str(getattr(cause, "orig", None) or cause).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
