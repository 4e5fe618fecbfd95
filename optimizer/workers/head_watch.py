"""Watch a joined Ray cluster's head; when it is gone, end the driver with a clear message.

Without GCS fault tolerance a Ray driver cannot re-attach to a restarted head (it is a new
cluster: the actors, objects and placement groups are gone), and after 60 s Ray ends the driver
process itself with a C++ log line. A campaign driver is crash-safe by design (every query is
committed before it is sent, results are written once), so the honest way out is to exit early,
say why and how to continue: :class:`HeadWatch` probes the head's GCS port every ``interval_s``;
unreachable for ``timeout_s``, it logs an ERROR naming the address and ``tiltloop resume NAME``,
prints the same line on stderr and ends the process with :data:`EXIT_RAY_LOST` (as a crash
would: no Ray call can finish any more, so no clean shutdown is possible).

    >>> with HeadWatch("10.0.0.5:6379", campaign="c1", timeout_s=20):   # doctest: +SKIP
    ...     drive(...)
"""
from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time

log = logging.getLogger(__name__)

#: The exit status of a driver whose Ray cluster's head went away.
EXIT_RAY_LOST = 4


def head_reachable(address: str, timeout_s: float = 2.0) -> bool:
    """Whether the GCS at ``HOST:PORT`` accepts a TCP connection."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


class HeadWatch:
    """A daemon thread that ends the process once the head at ``address`` has been unreachable
    for ``timeout_s`` (see the module docstring). ``stop()`` (or leaving the ``with``) ends it."""

    def __init__(self, address: str, *, campaign: str | None, timeout_s: float,
                 interval_s: float = 1.0) -> None:
        self.address = address
        self.campaign = campaign
        # who speaks in the log: a campaign's driver, or ``tiltloop serve`` (campaign None)
        self.who = f"campaign {campaign}" if campaign is not None else "tiltloop serve"
        self.timeout_s = float(timeout_s)
        self.interval_s = float(interval_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tiltloop-ray-head-watch",
                                        daemon=True)

    def _run(self) -> None:
        down_since: float | None = None
        while not self._stop.wait(self.interval_s):
            if head_reachable(self.address, timeout_s=min(2.0, self.interval_s * 2)):
                if down_since is not None:
                    log.warning("%s: the Ray head at %s answers again", self.who, self.address)
                down_since = None
                continue
            now = time.monotonic()
            if down_since is None:
                down_since = now
                log.warning("%s: the Ray head at %s does not answer; waiting up to %g s",
                            self.who, self.address, self.timeout_s)
            elif now - down_since >= self.timeout_s and not self._stop.is_set():
                self._give_up(now - down_since)

    def _give_up(self, seconds: float) -> None:
        if self.campaign is not None:
            remedy = f"once the cluster is back, run `tiltloop resume {self.campaign}`"
        else:  # the service: its supervisor restarts it and the leases hand campaigns back
            remedy = ("restart `tiltloop serve` once the cluster is back (a supervisor does); its "
                      "campaigns' leases expire and the drivers continue them")
        message = (f"{self.who}: the Ray cluster's head at {self.address} has not answered for "
                   f"{seconds:.0f} s (limit {self.timeout_s:g} s); this process exits now. Every "
                   "query is in the database (results already received are kept, queries at the "
                   f"oracle are re-polled, none is sent twice): {remedy}")
        log.error("%s", message)
        try:
            print(f"tiltloop: {message}", file=sys.stderr, flush=True)
        finally:
            os._exit(EXIT_RAY_LOST)

    def start(self) -> HeadWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def __enter__(self) -> HeadWatch:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
