"""A supervised Ray actor pool: dead actors are replaced and their chunk is redone.

``ray.util.ActorPool`` drops an actor that dies and never replaces it, so a long campaign slowly
loses its workers and a round whose chunk was on the dead actor fails. This pool:

1. keeps ``size`` actors alive, created with the same class, arguments and options;
2. hands chunks (plain JSON/bytes/array payloads) to idle actors, one at a time;
3. when an actor dies (process crash, ``ray.kill``, node loss), kills its handle, starts a
   replacement and puts the chunk back in the queue (at most ``max_retries`` redos per chunk);
4. an exception raised by the chunk's own code is not retried (it would fail again) and is
   re-raised as :class:`WorkerPoolError` naming the chunk.

Redoing a chunk is safe because workers are pure: they never call the oracle or the database.

    >>> pool = SupervisedPool(Worker, size=2)               # doctest: +SKIP
    >>> pool.map("run_chunk", [spec0, spec1])               # doctest: +SKIP
    [result0, result1]
"""
from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError

from optimizer.errors import WorkerPoolError

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
    """``size`` actors of ``actor_cls`` kept alive; ``map`` runs one method over chunks."""

    def __init__(
        self,
        actor_cls: Any,
        *,
        size: int,
        actor_args: Sequence[Any] = (),
        actor_kwargs: dict[str, Any] | None = None,
        actor_options: dict[str, Any] | None = None,
        max_retries: int = 3,
    ) -> None:
        if size < 1:
            raise ValueError(f"pool size must be >= 1, got {size}")
        self._cls = actor_cls
        self._args = tuple(actor_args)
        self._kwargs = dict(actor_kwargs or {})
        self._options = dict(actor_options or {})
        self.max_retries = max_retries
        self.replacements = 0
        self._actors: list[Any] = [self._new_actor() for _ in range(size)]

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
            WorkerPoolError: a chunk raised an error in its own code, or its actor died more than
                ``max_retries`` times.
        """
        results: list[Any] = [None] * len(chunks)
        attempts = [0] * len(chunks)
        queue: deque[int] = deque(range(len(chunks)))
        idle: deque[int] = deque(range(len(self._actors)))
        running: dict[Any, tuple[int, int]] = {}  # ref -> (slot, chunk)

        def emit(kind: str, chunk: int, slot: int) -> None:
            if on_event is not None:
                on_event(PoolEvent(kind, chunk, slot, attempts[chunk], self._actors[slot]))

        while queue or running:
            while queue and idle:
                slot, chunk = idle.popleft(), queue.popleft()
                ref = getattr(self._actors[slot], method).remote(chunks[chunk])
                running[ref] = (slot, chunk)
                emit("submit", chunk, slot)
            done, _ = ray.wait(list(running), num_returns=1)
            ref = done[0]
            slot, chunk = running.pop(ref)
            try:
                results[chunk] = ray.get(ref)
            except _DEATH_ERRORS as exc:
                if getattr(exc, "actor_init_failed", False):  # e.g. the prior fails to load
                    self._cancel(running)
                    self._replace(slot)
                    raise WorkerPoolError(
                        f"a worker failed to start, so chunk {chunk} cannot run: {_last_line(exc)}"
                    ) from None
                attempts[chunk] += 1
                log.warning("worker in slot %d died on chunk %d (%s); replacing it", slot, chunk,
                            type(exc).__name__)
                if attempts[chunk] > self.max_retries:
                    self._replace(slot)
                    raise WorkerPoolError(
                        f"chunk {chunk} lost its worker {attempts[chunk]} times (max_retries="
                        f"{self.max_retries}); last error: {exc}. Check the worker logs (ray logs) "
                        "for out-of-memory kills or a prior that fails to load"
                    ) from None
                self._replace(slot)
                queue.appendleft(chunk)
                emit("replaced", chunk, slot)
            except RayTaskError as exc:
                self._cancel(running)
                raise WorkerPoolError(
                    f"chunk {chunk} failed inside the worker: {exc.cause!r}" if exc.cause is not None
                    else f"chunk {chunk} failed inside the worker: {exc}"
                ) from None
            else:
                emit("done", chunk, slot)
            idle.append(slot)
        return results

    @staticmethod
    def _cancel(running: dict[Any, tuple[int, int]]) -> None:
        for ref in running:
            try:
                ray.cancel(ref)
            except Exception:
                pass

    def shutdown(self) -> None:
        """Kill every actor of the pool."""
        for actor in self._actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:
                pass
        self._actors = []

    def __enter__(self) -> SupervisedPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
