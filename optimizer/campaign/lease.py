"""One driver per campaign: the campaign lease held while a driver runs.

`run`, `resume`, `ask` and (later) `tiltloop serve` all drive a campaign through
:func:`optimizer.campaign.service.drive`, which holds the campaign's lease in the database
(``Storage.acquire_campaign_lease``, timed by the database clock):

1. acquired before the oracle is touched; held by another live driver → :class:`CampaignStateError`
   naming the holder and its expiry (exit 2), nothing sent;
2. renewed by a background thread every ``ttl_s / 3`` (so a long SMC round does not lose it);
3. lost (expired and taken by another driver, or the database refused the renewal) → ``lost`` is
   set and a WARNING logged; the driver stops at its next pass;
4. released when the driver ends (a crashed driver's lease expires after ``ttl_s``).

    >>> with DriverLease(storage, "c1") as lease:          # doctest: +SKIP
    ...     run_driver(stop_when=lambda: lease.lost)
"""
from __future__ import annotations

import contextvars
import logging
import os
import socket
import threading
import uuid

from optimizer.errors import CampaignStateError
from storage import Storage, StorageError

log = logging.getLogger(__name__)

#: Seconds a driver's lease lasts without renewal (a SIGKILLed driver blocks others this long).
DEFAULT_TTL_S = 60.0


def driver_owner() -> str:
    """``host:pid:random``: names this driver in leases and messages."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _dead_here(owner: str) -> bool:
    """True when ``owner`` (``host:pid:random``) names a process of this host that has exited."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists but is not ours to signal
        return False
    return False


class DriverLease:
    """The campaign lease of one driver (see the module docstring)."""

    def __init__(self, storage: Storage, name: str, *, ttl_s: float = DEFAULT_TTL_S,
                 owner: str | None = None) -> None:
        self.storage = storage
        self.name = name
        self.ttl_s = float(ttl_s)
        self.owner = owner or driver_owner()
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> DriverLease:
        if self.storage.acquire_campaign_lease(self.name, self.owner, self.ttl_s) is None:
            held = self.storage.campaign_lease(self.name)
            if held is not None and _dead_here(held.owner):
                # a driver of this machine that no longer runs (SIGKILL, OOM): resume at once
                # instead of waiting out its lease
                log.warning("campaign %s: taking over the lease of driver %s, which no longer "
                            "runs on this host", self.name, held.owner)
                self.storage.release_campaign_lease(self.name, held.owner)
                if self.storage.acquire_campaign_lease(self.name, self.owner, self.ttl_s) is not None:
                    return self._start()
                held = self.storage.campaign_lease(self.name)
            who = f"{held.owner} until {held.expires_at:%Y-%m-%d %H:%M:%S} UTC" if held else "another driver"
            raise CampaignStateError(
                f"campaign {self.name!r} is being driven by {who}; one driver per campaign — "
                "stop that one first, or wait for its lease to expire if it crashed")
        return self._start()

    def _start(self) -> DriverLease:
        # the renewer inherits the caller's logging context (the campaign tag on its warnings)
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._renew,),
                                        name=f"lease-{self.name}", daemon=True)
        self._thread.start()
        return self

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                ok = self.storage.heartbeat_campaign_lease(self.name, self.owner, self.ttl_s) or \
                    self.storage.acquire_campaign_lease(self.name, self.owner, self.ttl_s) is not None
            except StorageError as exc:  # the database is unreachable: the lease may run out
                log.warning("campaign %s: renewing the driver lease failed (%s); retrying in %.0f s",
                            self.name, exc, self.ttl_s / 3)
                continue
            if not ok:
                self.lost = True
                log.warning("campaign %s: driver %s lost its lease to another driver; stopping",
                            self.name, self.owner)
                return

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.ttl_s)
        try:
            self.storage.release_campaign_lease(self.name, self.owner)
        except StorageError as err:  # expires by itself after ttl_s
            log.warning("campaign %s: releasing the driver lease failed (%s); it expires in "
                        "%.0f s", self.name, err, self.ttl_s)
