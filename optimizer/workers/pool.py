"""A supervised Ray actor pool: dead actors are replaced and their chunk is redone.

``ray.util.ActorPool`` drops an actor that dies and never replaces it, so a long campaign slowly
loses its workers and a round whose chunk was on the dead actor fails. This pool:

1. keeps ``size`` actors alive, created with the same class, arguments and options;
2. hands chunks (plain JSON/bytes/array payloads) to idle actors, one at a time;
3. when an actor dies (process crash, ``ray.kill``, node loss) or a chunk runs past
   ``chunk_timeout_s``, kills its handle, starts a replacement and puts the chunk back in the
   queue (at most ``max_retries`` redos per chunk); a replacement gets chunks only once it
   answers, so a replacement the cluster cannot place yet (its node is gone) does not stall
   the round: the other actors take its chunks;
4. an exception raised by the chunk's own code is not retried (it would fail again) and is
   re-raised as :class:`WorkerPoolError` naming the chunk;
5. with a ``demand`` (``optimizer.workers.placement``), checks the cluster can hold every
   actor and reserves a placement group for all of them before the first actor starts.

Every wait has a limit: a chunk ``chunk_timeout_s``, a pool with no actor that answers
``placement_timeout_s``.

Redoing a chunk is safe because workers are pure: they never call the oracle or the database.

    >>> pool = SupervisedPool(Worker, size=2)               # doctest: +SKIP
    >>> pool.map("run_chunk", [spec0, spec1])               # doctest: +SKIP
    [result0, result1]
"""
from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError

from optimizer.errors import WorkerPoolError
from optimizer.workers.placement import WorkerDemand, in_group, release, reserve, shortfall_message

log = logging.getLogger(__name__)

_DEATH_ERRORS = (RayActorError, WorkerCrashedError)


def _last_line(exc: BaseException) -> str:
    """The final line of a Ray error (the original exception), without Ray's traceback noise."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


@dataclass(frozen=True)
class PoolEvent:
    """What happened in the pool: ``kind`` is "submit", "done" or "replaced"."""

    kind: str
    chunk: int
    slot: int
    attempt: int
    actor: Any = None


class SupervisedPool:
    """``size`` actors of ``actor_cls`` kept alive; ``map`` runs one method over chunks.

    Args:
        actor_cls: a ``ray.remote`` class.
        size: actors in the pool.
        actor_args, actor_kwargs: its constructor's arguments.
        actor_options: Ray actor options (used as they are when no ``demand`` is given).
        max_retries: redos of one chunk after its actor died or timed out.
        chunk_timeout_s: the longest one chunk may run before its actor is replaced.
        placement_timeout_s: how long the placement group, or a pool whose every actor is
            still starting, may wait for the cluster.
        demand: the actors' resources; given, the pool checks the cluster, reserves a
            placement group of ``size`` bundles and schedules every actor (and replacement)
            into it.
        ready_method: an actor method with no arguments that answers once the actor is ready
            (a replacement gets chunks only after it answered).
    """

    def __init__(
        self,
        actor_cls: Any,
        *,
        size: int,
        actor_args: Sequence[Any] = (),
        actor_kwargs: dict[str, Any] | None = None,
        actor_options: dict[str, Any] | None = None,
        max_retries: int = 3,
        chunk_timeout_s: float = 3600.0,
        placement_timeout_s: float = 120.0,
        demand: WorkerDemand | None = None,
        ready_method: str | None = None,
    ) -> None:
        if size < 1:
            raise ValueError(f"pool size must be >= 1, got {size}")
        for name, value in (("chunk_timeout_s", chunk_timeout_s),
                            ("placement_timeout_s", placement_timeout_s)):
            if not (value > 0 and value < float("inf")):
                raise ValueError(f"{name} must be a finite number > 0, got {value}")
        self._cls = actor_cls
        self._args = tuple(actor_args)
        self._kwargs = dict(actor_kwargs or {})
        self._options = dict(actor_options or {})
        self.max_retries = max_retries
        self.chunk_timeout_s = float(chunk_timeout_s)
        self.placement_timeout_s = float(placement_timeout_s)
        self.demand = demand
        self._ready_method = ready_method
        self.replacements = 0
        self._pg: Any = None
        if demand is not None:
            self._pg = reserve(demand, timeout_s=self.placement_timeout_s)
            self._options = {**demand.actor_options(), **in_group(self._pg)}
        self._actors: list[Any] = [self._new_actor() for _ in range(size)]
        # slots whose (replacement) actor has not answered yet: slot -> (ready ref, since)
        self._starting: dict[int, tuple[Any, float]] = {}
        self._start_failures: dict[int, int] = {}  # slot -> replacements that died starting

    def _new_actor(self) -> Any:
        cls = self._cls.options(**self._options) if self._options else self._cls
        return cls.remote(*self._args, **self._kwargs)

    @property
    def actors(self) -> list[Any]:
        """The live actor handles, one per slot."""
        return list(self._actors)

    def _replace(self, slot: int) -> None:
        try:
            ray.kill(self._actors[slot], no_restart=True)
        except Exception:  # already gone
            pass
        self._actors[slot] = self._new_actor()
        self.replacements += 1
        if self._ready_method is not None:
            ref = getattr(self._actors[slot], self._ready_method).remote()
            self._starting[slot] = (ref, time.monotonic())

    def map(
        self,
        method: str,
        chunks: Sequence[Any],
        *,
        on_event: Callable[[PoolEvent], None] | None = None,
    ) -> list[Any]:
        """Run ``actor.method(chunk)`` for every chunk; results in chunk order.

        Args:
            method: the actor method name.
            chunks: one payload per chunk.
            on_event: called in this thread after each submit, completion and replacement.

        Raises:
            WorkerPoolError: a chunk raised an error in its own code, its actor died or timed
                out more than ``max_retries`` times, or no actor could be placed in time.
        """
        results: list[Any] = [None] * len(chunks)
        attempts = [0] * len(chunks)
        queue: deque[int] = deque(range(len(chunks)))
        idle: deque[int] = deque(s for s in range(len(self._actors)) if s not in self._starting)
        running: dict[Any, tuple[int, int, float]] = {}  # ref -> (slot, chunk, started)
        stalled_since: float | None = None

        def emit(kind: str, chunk: int, slot: int) -> None:
            if on_event is not None:
                on_event(PoolEvent(kind, chunk, slot, attempts[chunk], self._actors[slot]))

        def lost(slot: int, chunk: int, why: str) -> None:
            attempts[chunk] += 1
            log.warning("worker in slot %d %s on chunk %d; replacing it and redoing the chunk "
                        "(attempt %d of %d)", slot, why, chunk, attempts[chunk] + 1,
                        self.max_retries + 1)
            self._replace(slot)
            if attempts[chunk] > self.max_retries:
                self._cancel(running)
                raise WorkerPoolError(
                    f"chunk {chunk} lost its worker {attempts[chunk]} times (max_retries="
                    f"{self.max_retries}); last: the worker {why}. Check the worker logs (ray "
                    "logs) for out-of-memory kills, a prior that fails to load, or a chunk "
                    "slower than workers.chunk_timeout_s")
            queue.appendleft(chunk)
            emit("replaced", chunk, slot)
            if slot not in self._starting:
                idle.append(slot)

        while queue or running:
            while queue and idle:
                slot, chunk = idle.popleft(), queue.popleft()
                ref = getattr(self._actors[slot], method).remote(chunks[chunk])
                running[ref] = (slot, chunk, time.monotonic())
                emit("submit", chunk, slot)
            now = time.monotonic()
            if not running:  # chunks wait, every actor is still starting (being placed)
                stalled_since = now if stalled_since is None else stalled_since
                if now - stalled_since > self.placement_timeout_s:
                    raise WorkerPoolError(self._stalled_message(len(queue)))
            else:
                stalled_since = None
            deadline = min((t + self.chunk_timeout_s for _, _, t in running.values()),
                           default=now + self.placement_timeout_s)
            waiting = list(running) + [ref for ref, _ in self._starting.values()]
            if not waiting:  # not expected: every slot is idle, running or starting
                raise WorkerPoolError(f"{len(queue)} chunk(s) wait and the pool has no worker")
            done, _ = ray.wait(waiting, num_returns=1, timeout=max(0.0, min(deadline - now, 5.0)))
            if not done:
                now = time.monotonic()
                for ref, (slot, chunk, started) in list(running.items()):
                    if now - started > self.chunk_timeout_s:
                        running.pop(ref)
                        lost(slot, chunk, f"ran past workers.chunk_timeout_s = "
                                          f"{self.chunk_timeout_s:g} s")
                continue
            ref = done[0]
            if ref not in running:  # a replacement answered (or failed to start)
                slot = next(s for s, (r, _) in self._starting.items() if r == ref)
                del self._starting[slot]
                try:
                    ray.get(ref)
                except _DEATH_ERRORS as exc:
                    self._start_failures[slot] = self._start_failures.get(slot, 0) + 1
                    if (getattr(exc, "actor_init_failed", False)
                            or self._start_failures[slot] > self.max_retries):
                        self._cancel(running)
                        raise WorkerPoolError(
                            f"a replacement worker failed to start, so chunk "
                            f"{queue[0] if queue else '(none)'} cannot run: {_last_line(exc)}"
                        ) from None
                    # its node went away while it started: try again elsewhere
                    log.warning("replacement worker in slot %d died while starting (%s); starting "
                                "another", slot, type(exc).__name__)
                    self._replace(slot)
                    continue
                self._start_failures.pop(slot, None)
                idle.append(slot)
                continue
            slot, chunk, _ = running.pop(ref)
            try:
                results[chunk] = ray.get(ref, timeout=self.chunk_timeout_s)
            except _DEATH_ERRORS as exc:
                if getattr(exc, "actor_init_failed", False):  # e.g. the prior fails to load
                    self._cancel(running)
                    self._replace(slot)
                    raise WorkerPoolError(
                        f"a worker failed to start, so chunk {chunk} cannot run: {_last_line(exc)}"
                    ) from None
                lost(slot, chunk, f"died ({type(exc).__name__})")
                continue
            except RayTaskError as exc:
                self._cancel(running)
                raise WorkerPoolError(
                    f"chunk {chunk} failed inside the worker: {exc.cause!r}" if exc.cause is not None
                    else f"chunk {chunk} failed inside the worker: {exc}"
                ) from None
            emit("done", chunk, slot)
            idle.append(slot)
        return results

    def _stalled_message(self, waiting: int) -> str:
        where = (shortfall_message(self.demand) if self.demand is not None
                 else "check `ray status` for the cluster's free resources")
        return (f"{waiting} chunk(s) waited more than workers.placement_timeout_s = "
                f"{self.placement_timeout_s:g} s and none of the {len(self._actors)} workers "
                f"could be placed (their nodes are gone or busy): {where}")

    @staticmethod
    def _cancel(running: dict[Any, Any]) -> None:
        for ref in running:
            try:
                ray.cancel(ref)
            except Exception:
                pass

    def shutdown(self) -> None:
        """Kill every actor of the pool and release its placement group."""
        for actor in self._actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:
                pass
        self._actors = []
        self._starting = {}
        if self._pg is not None:
            release(self._pg)
            self._pg = None

    def __enter__(self) -> SupervisedPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
