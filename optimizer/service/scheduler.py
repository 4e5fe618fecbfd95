"""The service's scheduler: drives every campaign whose lease this replica holds.

Every ``tick_s`` the scheduler thread takes the leases of free campaigns (active, no live lease:
:meth:`~storage.Storage.acquire_free_campaigns`, which never hands one campaign to two owners)
up to ``max_campaigns`` driven at once, and starts one driver thread per campaign:
:func:`optimizer.campaign.service.drive` with this replica as lease owner, the shared worker
pools (:mod:`optimizer.service.pools`), the metrics as observer and the stop flag.

- A campaign another replica drove is taken over when that replica's lease expires (it died);
  the driver resumes it from the database (in-flight queries re-polled by job id, never resent).
- A driver that raises is logged at WARNING with the campaign and traceback, its lease is
  released, and this replica leaves the campaign alone for a backoff that doubles per failure
  (``backoff_s``: 10 s, 20 s, … capped at 10 min) — another replica may try it meanwhile.
- :meth:`Scheduler.stop`: stop taking work, set the stop flag (each driver ends at its next pass,
  after the transaction it is in; its lease is released on the way out), join every thread
  within the limit and name any driver that did not stop in time (its lease then expires).

Each driver thread runs inside :func:`tiltloop.logs.campaign_context`, so its log lines carry
the campaign.

    >>> sched = Scheduler(storage, owner=driver_owner(), metrics=ServiceMetrics()).start()  # doctest: +SKIP
    >>> sched.stop(timeout_s=30)                                                          # doctest: +SKIP
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from optimizer.campaign.lease import driver_owner
from optimizer.campaign.service import drive, load_campaign_config
from optimizer.service.metrics import ServiceMetrics
from optimizer.service.pools import WorkerPools
from storage import Storage
from storage.errors import StorageError
from tiltloop.logs import campaign_context

log = logging.getLogger(__name__)

#: Driver type: ``drive``'s signature (tests substitute a stand-in).
DriveFn = Callable[..., Any]


@dataclass
class _Backoff:
    failures: int
    retry_at: float


class Scheduler:
    """Drives the campaigns this replica holds leases on (see the module docstring).

    Args:
        storage: the shared database.
        owner: this replica's name in leases (default ``host:pid:random``).
        metrics: counts lease changes; observes every driver's rounds and results.
        lease_ttl_s: lease time-out: a dead replica's campaigns are taken over after it.
        tick_s: seconds between two looks for free campaigns.
        max_campaigns: campaigns driven at once by this replica.
        pools: worker pools shared by the drivers (default: a new :class:`WorkerPools`).
        backoff_s: (first, cap) seconds this replica leaves a campaign alone after its driver
            failed; doubled per consecutive failure.
        progress: log drivers' progress lines at INFO (False: drop them).
        drive_fn: the driver (default :func:`optimizer.campaign.service.drive`).
    """

    def __init__(self, storage: Storage, *, owner: str | None = None,
                 metrics: ServiceMetrics | None = None, lease_ttl_s: float = 30.0,
                 tick_s: float = 1.0, max_campaigns: int = 50, pools: WorkerPools | None = None,
                 backoff_s: tuple[float, float] = (10.0, 600.0), progress: bool = True,
                 drive_fn: DriveFn | None = None) -> None:
        if lease_ttl_s <= 0 or tick_s <= 0 or not 1 <= max_campaigns <= 1000:
            raise ValueError(f"need lease_ttl_s > 0, tick_s > 0 and 1 <= max_campaigns <= 1000; "
                             f"got {lease_ttl_s}, {tick_s}, {max_campaigns}")
        self.storage = storage
        self.owner = owner or driver_owner()
        self.metrics = metrics or ServiceMetrics()
        self.lease_ttl_s = float(lease_ttl_s)
        self.tick_s = float(tick_s)
        self.max_campaigns = int(max_campaigns)
        self.pools = pools or WorkerPools()
        self.backoff_s = backoff_s
        self.progress = progress
        self._drive = drive_fn or drive
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._drivers: dict[str, threading.Thread] = {}
        self._backoff: dict[str, _Backoff] = {}
        self._thread: threading.Thread | None = None
        self._problem: str | None = None  # the last tick's database error, for /readyz

    # ---- life cycle ------------------------------------------------------------------------
    def start(self) -> Scheduler:
        """Start the scheduler thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
            self._thread.start()
        return self

    def request_stop(self) -> None:
        """Stop taking work and tell every driver to stop at its next pass; returns at once
        (safe from a signal handler)."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        """True once :meth:`request_stop` (or :meth:`stop`) was called."""
        return self._stopping.is_set()

    def stop(self, timeout_s: float = 30.0) -> list[str]:
        """Stop taking work, stop the drivers and wait for them, at most ``timeout_s`` in all.

        Returns:
            The campaigns whose driver did not stop in time (each logged at WARNING; its lease
            expires by itself after ``lease_ttl_s``).
        """
        self.request_stop()
        deadline = time.monotonic() + timeout_s
        if self._thread is not None:
            self._thread.join(timeout=max(0.0, deadline - time.monotonic()))
        with self._lock:
            drivers = dict(self._drivers)
        late: list[str] = []
        for name, thread in drivers.items():
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                late.append(name)
                log.warning("campaign %s: its driver did not stop within %g s; leaving it (the "
                            "lease expires by itself after %.0f s and another replica resumes "
                            "the campaign from the database)", name, timeout_s, self.lease_ttl_s,
                            extra={"campaign": name})
        return late

    # ---- state -----------------------------------------------------------------------------
    def running(self) -> list[str]:
        """The campaigns driven by this replica now."""
        with self._lock:
            return sorted(n for n, t in self._drivers.items() if t.is_alive())

    def backing_off(self) -> dict[str, float]:
        """Campaigns this replica leaves alone after a failure → seconds until it tries again."""
        now = time.monotonic()
        with self._lock:
            return {n: b.retry_at - now for n, b in self._backoff.items() if b.retry_at > now}

    def readiness(self) -> dict[str, str]:
        """``{}`` when ready, else ``{component: problem}`` (``/readyz``)."""
        import ray

        problems: dict[str, str] = {}
        if not ray.is_initialized():
            problems["ray"] = "not connected to a Ray cluster"
        if self._thread is None:
            problems["scheduler"] = "not started"
        elif self._stopping.is_set():
            problems["scheduler"] = "stopping"
        elif not self._thread.is_alive():
            problems["scheduler"] = "its thread ended unexpectedly (see the log)"
        elif self._problem is not None:
            problems["scheduler"] = self._problem
        return problems

    # ---- the loop --------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.tick()
            except Exception:  # noqa: BLE001 — one bad tick must not end the scheduler
                log.warning("scheduler: a tick failed; trying again in %.1f s", self.tick_s,
                            exc_info=True)
            self._stopping.wait(self.tick_s)

    def tick(self) -> list[str]:
        """One look for free campaigns; returns the campaigns whose drivers it started."""
        now = time.monotonic()
        with self._lock:
            for name in [n for n, t in self._drivers.items() if not t.is_alive()]:
                del self._drivers[name]
            room = self.max_campaigns - len(self._drivers)
            # a campaign past its backoff may be taken again; its failure count stays until
            # a driver of it ends well, so the next failure waits twice as long
            skip = set(self._drivers) | {n for n, b in self._backoff.items() if b.retry_at > now}
        if room <= 0 or self._stopping.is_set():
            return []
        try:
            taken = self.storage.acquire_free_campaigns(self.owner, self.lease_ttl_s, room,
                                                        exclude=skip)
        except StorageError as exc:
            self._problem = f"cannot take campaign leases: {exc}"
            log.warning("scheduler: taking free campaigns failed (%s); trying again in %.1f s",
                        exc, self.tick_s)
            return []
        self._problem = None
        if not taken:
            return []
        self.metrics.lease_changed("acquired", len(taken))
        started = []
        for name in taken:
            if self._stopping.is_set():  # stopped while taking them: give them back at once
                self._release(name)
                continue
            self._announce(name)
            thread = threading.Thread(target=self._run_driver, args=(name,),
                                      name=f"driver-{name}", daemon=True)
            with self._lock:
                self._drivers[name] = thread
            thread.start()
            started.append(name)
        return started

    def _announce(self, name: str) -> None:
        """Log the lease taken: a takeover from another replica at WARNING (operators want to
        see failovers), a free campaign at INFO."""
        previous = None
        try:
            events = self.storage.list_events(name, kind="campaign.lease")
            if events:
                previous = (events[-1].payload or {}).get("previous_owner")
        except StorageError:
            pass
        if previous and previous != self.owner:
            log.warning("campaign %s: taking it over from replica %s, whose lease expired; "
                        "resuming it from the database", name, previous,
                        extra={"campaign": name})
        else:
            log.info("campaign %s: lease taken by replica %s; driving it", name, self.owner,
                     extra={"campaign": name})

    def _run_driver(self, name: str) -> None:
        with campaign_context(name):
            self._drive_one(name)

    def _drive_one(self, name: str) -> None:
        failed = False
        try:
            config = load_campaign_config(self.storage, name)
            status = self._drive(
                config, self.storage, lease_owner=self.owner, lease_ttl_s=self.lease_ttl_s,
                should_stop=self._stopping.is_set, observer=self.metrics,
                pool_factory=self.pools.lend,
                progress=(lambda msg: log.info("%s", msg)) if self.progress else None)
            log.info("campaign %s: driver ended (%s)", name, getattr(status, "status", status))
        except BaseException as exc:  # noqa: BLE001 — a driver's failure must not end the thread silently
            failed = True
            delay = self._record_failure(name)
            log.warning("campaign %s: its driver failed (%s: %s); lease released, this replica "
                        "retries it in %g s", name, type(exc).__name__, exc, delay,
                        exc_info=True)
        else:
            with self._lock:
                self._backoff.pop(name, None)
        finally:
            self._settle_lease(name, failed=failed)

    def _record_failure(self, name: str) -> float:
        first, cap = self.backoff_s
        with self._lock:
            prev = self._backoff.get(name)
            failures = 1 if prev is None else prev.failures + 1
            delay = min(cap, first * 2 ** (failures - 1))
            self._backoff[name] = _Backoff(failures, time.monotonic() + delay)
        return delay

    def _settle_lease(self, name: str, *, failed: bool) -> None:
        """After a driver ended: release the lease if it is still ours (drive() releases it on
        the way out; a driver that failed before holding it leaves the scheduler's), and count
        the change."""
        try:
            lease = self.storage.campaign_lease(name)
            if lease is not None and lease.owner == self.owner:
                self._release(name)
                return
            if lease is not None and lease.live:
                log.warning("campaign %s: replica %s lost its lease to %s", name, self.owner,
                            lease.owner)
                self.metrics.lease_changed("lost")
            else:
                self.metrics.lease_changed("released")
        except StorageError as exc:
            log.warning("campaign %s: checking the lease after the driver ended failed (%s); it "
                        "expires by itself in %.0f s", name, exc, self.lease_ttl_s)

    def _release(self, name: str) -> None:
        try:
            if self.storage.release_campaign_lease(name, self.owner):
                self.metrics.lease_changed("released")
        except StorageError as exc:
            log.warning("campaign %s: releasing the lease failed (%s); it expires by itself in "
                        "%.0f s", name, exc, self.lease_ttl_s)
