"""The outage retry helper (``storage.outage``): which errors are retried, the backoff, the
warnings, the window and its give-up message; a fake clock, so no test sleeps."""
from __future__ import annotations

import logging

import psycopg
import pytest
from sqlalchemy.exc import OperationalError, ProgrammingError

from optimizer.campaign.config import StorageConfig
from storage.errors import DatabaseError, DatabaseUnreachable
from storage.outage import DEFAULT_WINDOW_S, DatabaseOutage, OutageRetry, check_window, is_transient


class FakeClock:
    """A monotonic clock that only the retry's sleeps move."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert 0 < seconds <= 0.2 + 1e-9, seconds  # waits are sliced (should_stop is asked)
        self.sleeps.append(seconds)
        self.now += seconds


def _lost_connection() -> DatabaseUnreachable:
    """The error a storage call raises when the server went away (mapped, with its cause)."""
    try:
        raise OperationalError("SELECT 1", {}, psycopg.OperationalError("server closed the connection"))
    except OperationalError as raw:
        try:
            raise DatabaseUnreachable("cannot connect to Postgres at 127.0.0.1:5432 ...") from raw
        except DatabaseUnreachable as mapped:
            return mapped


class Flaky:
    """Fails with ``error`` the first ``failures`` calls, then returns ``"done"``."""

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or _lost_connection()
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "done"


def _retry(clock: FakeClock, window_s: float = 30.0, **kw) -> OutageRetry:  # type: ignore[no-untyped-def]
    return OutageRetry(window_s, campaign="c1", clock=clock, sleep=clock.sleep, seed=1, **kw)


def test_connection_errors_are_retried_with_warnings_until_the_unit_succeeds(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    recovered: list[float] = []
    retry = _retry(clock, on_recovered=lambda: recovered.append(clock.now))
    unit = Flaky(4)
    with caplog.at_level(logging.WARNING, logger="storage.outage"):
        assert retry.call(unit, "dispatching queries") == "done"
    assert unit.calls == 5 and retry.retries == 4 and retry.outages == 1
    assert recovered == [clock.now]  # once, after the success
    waits = [r for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(waits) == 4
    first = waits[0].getMessage()
    assert "campaign c1" in first and "dispatching queries" in first
    assert "server closed the connection" in first  # the driver's reason, not the hints
    assert "0.0 s of the 30 s outage window" in first
    assert "s of the 30 s outage window" in waits[-1].getMessage()
    assert all(getattr(r, "campaign", None) == "c1" for r in waits)
    assert "answers again after" in caplog.records[-1].getMessage()


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    clock = FakeClock()
    retry = _retry(clock, window_s=1000.0, first_delay_s=0.5, max_delay_s=4.0)
    marks: list[float] = []

    def unit() -> str:
        marks.append(clock.now)
        if len(marks) <= 6:
            raise _lost_connection()
        return "done"

    retry.call(unit, "polling")
    gaps = [b - a for a, b in zip(marks, marks[1:])]
    nominal = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    for gap, cap in zip(gaps, nominal):
        assert 0.5 * cap - 1e-6 <= gap <= cap + 1e-6, (gaps, nominal)
    assert len(set(round(g / c, 6) for g, c in zip(gaps, nominal))) > 1  # jittered, not fixed


def test_other_errors_are_not_retried() -> None:
    clock = FakeClock()
    for error in (DatabaseError("a storage transaction failed: syntax error"),
                  ValueError("bad design"),
                  ProgrammingError("SELECT x", {}, psycopg.ProgrammingError("no such column"))):
        unit = Flaky(1, error)
        with pytest.raises(type(error)):
            _retry(clock).call(unit, "recording")
        assert unit.calls == 1
    assert clock.sleeps == []


def test_past_the_window_the_outage_error_names_the_resume_command(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    unit = Flaky(10**6)
    with caplog.at_level(logging.WARNING, logger="storage.outage"), \
            pytest.raises(DatabaseOutage) as info:
        _retry(clock, window_s=3.0).call(unit, "polling the oracle")
    message = str(info.value)
    assert "`tiltloop resume c1`" in message and "storage.outage_window_s = 3" in message
    assert "polling the oracle" in message and "server closed the connection" in message
    assert 3.0 <= clock.now <= 3.0 + 1e-6  # the last attempt is made at the end of the window
    assert unit.calls < 20  # backoff, not a busy loop
    assert isinstance(info.value, DatabaseUnreachable)  # the CLI's usual path: message, exit 2
    assert not is_transient(info.value)  # an outer unit does not start a new window


def test_a_zero_window_gives_up_at_the_first_error() -> None:
    clock = FakeClock()
    unit = Flaky(1)
    with pytest.raises(DatabaseOutage):
        _retry(clock, window_s=0).call(unit, "polling")
    assert unit.calls == 1 and clock.sleeps == []


def test_each_outage_gets_its_own_window() -> None:
    clock = FakeClock()
    retry = _retry(clock, window_s=2.0)
    for _ in range(3):  # three 1.5 s outages in a row: each is ridden out
        unit = Flaky(10**6)
        started = clock.now

        def fails_for_1_5_s(unit: Flaky = unit, started: float = started) -> str:
            if clock.now - started < 1.5:
                return unit()
            return "done"

        assert retry.call(fails_for_1_5_s, "polling") == "done"
    assert retry.outages == 3


def test_should_stop_ends_the_wait_with_the_original_error() -> None:
    clock = FakeClock()
    stop = {"now": False}

    def unit() -> str:
        stop["now"] = clock.now > 1.0  # the service is shutting down during the outage
        raise _lost_connection()

    with pytest.raises(DatabaseUnreachable) as info:
        _retry(clock, window_s=60.0, should_stop=lambda: stop["now"]).call(unit, "polling")
    assert not isinstance(info.value, DatabaseOutage)
    assert clock.now < 10.0


def test_raw_driver_errors_are_classified() -> None:
    raw = OperationalError("SELECT 1", {}, psycopg.OperationalError("connection refused"))
    assert is_transient(raw) and is_transient(_lost_connection())
    locked = OperationalError("SELECT 1", {}, psycopg.OperationalError("database is locked"))
    assert not is_transient(locked)  # SQLite's busy error is not an outage
    assert not is_transient(ValueError("x"))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0, 86_401.0, "soon", None])
def test_window_bounds(bad: object) -> None:
    with pytest.raises(ValueError, match="storage.outage_window_s"):
        check_window(bad)  # type: ignore[arg-type]


def test_config_field_default_and_validation() -> None:
    assert StorageConfig().outage_window_s == DEFAULT_WINDOW_S >= 60
    assert StorageConfig(outage_window_s=3).outage_window_s == 3.0
    for bad in (True, float("inf"), float("nan"), -1, 10**9):
        with pytest.raises(ValueError, match="outage_window_s"):
            StorageConfig(outage_window_s=bad)


def test_disabled_runs_each_unit_once_and_keeps_its_error() -> None:
    clock = FakeClock()
    unit = Flaky(1)
    with pytest.raises(DatabaseUnreachable) as info:
        _retry(clock, enabled=False).call(unit, "polling")
    assert not isinstance(info.value, DatabaseOutage) and unit.calls == 1 and clock.sleeps == []
