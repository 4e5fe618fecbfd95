"""Worker pools shared by the campaigns of one service process, lent in fair FIFO turns.

Twenty campaigns on one prior should not start twenty copies of it: :class:`WorkerPools` keeps
one :class:`~optimizer.workers.pool.SupervisedPool` per *pool key* — (prior name, feature-map
kind, device, cpus per worker, use_gpu, custom resources) — built when the first campaign with
that key needs it. Its size (``workers.count``) and chunk retries (``workers.max_chunk_retries``)
are those of that first campaign; later campaigns with the same key share it whatever their own
``workers.count``.

A ``SupervisedPool`` runs one ``map`` at a time (its idle-slot bookkeeping lives in the call), so
campaigns take turns: :meth:`WorkerPools.lend` returns a :class:`LentPool` whose ``map`` waits
for a **ticket** in a first-in-first-out queue — rounds of different campaigns run in arrival
order and no campaign starves (a plain ``threading.Lock`` is not fair). The wait is bounded by
``turn_timeout_s``: past it, :class:`PoolTurnTimeout` names the campaign, the pool and who held
the turn. ``replacements`` reads the shared pool's count of replaced workers.

    >>> pools = WorkerPools(turn_timeout_s=600)                       # doctest: +SKIP
    >>> drive(config, storage, pool_factory=pools.lend)               # doctest: +SKIP
    >>> pools.shutdown_all()                                          # doctest: +SKIP
"""
from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from optimizer.campaign.config import CampaignConfig
from optimizer.errors import WorkerPoolError
from optimizer.workers.pool import PoolEvent, SupervisedPool

log = logging.getLogger(__name__)

#: Seconds a campaign waits for its turn on a shared pool before its round fails.
DEFAULT_TURN_TIMEOUT_S = 1800.0

PoolKey = tuple[str, str, str, float, str, tuple[tuple[str, float], ...]]


class PoolTurnTimeout(WorkerPoolError):
    """A campaign waited longer than the limit for its turn on a shared worker pool."""


def pool_key(config: CampaignConfig) -> PoolKey:
    """What two campaigns must agree on to share workers: the prior the actors load, the
    feature map, the device, and the resources each actor asks Ray for."""
    w = config.workers
    return (config.prior.name, config.feature_map.kind, str(config.prior.device),
            float(w.cpus_per_worker), str(w.use_gpu), tuple(sorted(w.resources.items())))


@dataclass
class _Turn:
    campaign: str
    ticket: int


class FairTurns:
    """A ticket lock: callers get the resource one at a time, in the order they asked.

    ``acquire(campaign, timeout_s)`` waits until every earlier ticket has been released (or gave
    up waiting); a caller that times out leaves the queue, so it cannot block those behind it.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._cond = threading.Condition()
        self._queue: deque[_Turn] = deque()  # the head holds the turn
        self._tickets = itertools.count()

    def acquire(self, campaign: str, timeout_s: float) -> _Turn:
        """Wait for this caller's turn (at most ``timeout_s``).

        Raises:
            PoolTurnTimeout: naming the campaign, the pool and the campaign that held the turn.
        """
        with self._cond:
            turn = _Turn(campaign, next(self._tickets))
            self._queue.append(turn)
            if self._cond.wait_for(lambda: self._queue[0] is turn, timeout=timeout_s):
                return turn
            self._queue.remove(turn)
            holder = self._queue[0].campaign if self._queue else "nobody"
            ahead = sum(1 for t in self._queue if t.ticket < turn.ticket)
            self._cond.notify_all()
        raise PoolTurnTimeout(
            f"campaign {campaign!r} waited {timeout_s:g} s for its turn on the shared worker "
            f"pool {self.name} ({ahead} round(s) ahead of it, the turn held by campaign "
            f"{holder!r}); too many campaigns share too few workers — add workers or Ray "
            "nodes, or run fewer campaigns per service process")

    def release(self, turn: _Turn) -> None:
        """End ``turn`` and wake the next caller in line."""
        with self._cond:
            if self._queue and self._queue[0] is turn:
                self._queue.popleft()
            else:  # not expected: a turn is released once, by its holder
                try:
                    self._queue.remove(turn)
                except ValueError:
                    pass
            self._cond.notify_all()

    def waiting(self) -> list[str]:
        """Campaigns in line, the holder first."""
        with self._cond:
            return [t.campaign for t in self._queue]


class LentPool:
    """One campaign's view of a shared pool: ``map`` in fair turns; never shut down by it."""

    def __init__(self, pool: SupervisedPool, turns: FairTurns, campaign: str,
                 turn_timeout_s: float) -> None:
        self._pool = pool
        self._turns = turns
        self.campaign = campaign
        self.turn_timeout_s = turn_timeout_s

    def map(self, method: str, chunks: Sequence[Any], *,
            on_event: Callable[[PoolEvent], None] | None = None) -> list[Any]:
        """``SupervisedPool.map`` once this campaign's turn comes (see :class:`FairTurns`).

        Raises:
            PoolTurnTimeout: the turn did not come within ``turn_timeout_s``.
            WorkerPoolError: as ``SupervisedPool.map``.
        """
        asked = time.monotonic()
        turn = self._turns.acquire(self.campaign, self.turn_timeout_s)
        waited = time.monotonic() - asked
        if waited > 1.0:
            log.info("campaign %s: waited %.1f s for its turn on worker pool %s", self.campaign,
                     waited, self._turns.name)
        try:
            return self._pool.map(method, chunks, on_event=on_event)
        finally:
            self._turns.release(turn)

    @property
    def replacements(self) -> int:
        """Workers of the shared pool replaced so far (all campaigns together)."""
        return self._pool.replacements

    def shutdown(self) -> None:
        """Nothing: the pool belongs to :class:`WorkerPools` (``shutdown_all``)."""


class WorkerPools:
    """The shared pools of one process (see the module docstring).

    Args:
        turn_timeout_s: how long a campaign's round waits for its turn on a pool.
        make_pool: builds a pool for a config (default ``optimizer.campaign.service.make_pool``;
            tests pass a stand-in).
    """

    def __init__(self, *, turn_timeout_s: float = DEFAULT_TURN_TIMEOUT_S,
                 make_pool: Callable[[CampaignConfig], Any] | None = None) -> None:
        if turn_timeout_s <= 0:
            raise ValueError(f"turn_timeout_s must be > 0, got {turn_timeout_s}")
        self.turn_timeout_s = float(turn_timeout_s)
        self._make_pool = make_pool
        self._lock = threading.Lock()
        self._pools: dict[PoolKey, tuple[Any, FairTurns]] = {}
        self._closed = False

    def lend(self, config: CampaignConfig) -> LentPool:
        """The shared pool for ``config``'s key (built now if it is the first), lent to
        campaign ``config.name``. Called by the driver once Ray is up."""
        key = pool_key(config)
        with self._lock:  # build once, even when two campaigns ask at the same time
            if self._closed:
                raise WorkerPoolError(f"campaign {config.name!r}: the service is shutting down; "
                                      "no worker pool is lent any more")
            entry = self._pools.get(key)
            if entry is None:
                entry = (self._build(config), FairTurns(_describe(key, config.workers.count)))
                self._pools[key] = entry
                log.info("worker pool %s started for campaign %s", entry[1].name, config.name)
        return LentPool(entry[0], entry[1], config.name, self.turn_timeout_s)

    def _build(self, config: CampaignConfig) -> Any:
        if self._make_pool is not None:
            return self._make_pool(config)
        from optimizer.campaign.service import make_pool

        return make_pool(config)

    def keys(self) -> list[PoolKey]:
        """The keys of the pools built so far."""
        with self._lock:
            return list(self._pools)

    def shutdown_all(self) -> None:
        """Kill every pool's workers (at service exit, after the drivers stopped); no pool is
        lent afterwards."""
        with self._lock:
            entries, self._pools = list(self._pools.values()), {}
            self._closed = True
        for pool, turns in entries:
            try:
                pool.shutdown()
            except Exception as exc:  # noqa: BLE001 — Ray may already be gone; exit anyway
                log.warning("worker pool %s: shutting it down failed (%s)", turns.name, exc)


def _describe(key: PoolKey, size: int) -> str:
    prior, fmap, device, cpus, gpu, resources = key
    extra = "".join(f", {name}={amount:g}" for name, amount in resources)
    return (f"[prior={prior}, feature_map={fmap}, device={device}, cpus={cpus:g}, gpu={gpu}{extra}, "
            f"size={size}]")
