"""Base of the oracles that run each query in a thread pool, one future per idempotency key.

1. ``submit`` queues ``_evaluate(request)`` once per new key; a key already queued or done is not
   evaluated again (the same key twice is one oracle query, never two).
2. ``poll`` maps each key's future to ``pending`` (queued), ``running``, ``cancelled``, its
   finished result (an exception escaping ``_evaluate`` becomes ``failed``), or ``unknown`` (never
   submitted here).
3. ``cancel`` drops queued evaluations; a running one finishes unless the subclass stops it.

>>> class Doubler(PooledOracle):
...     def _evaluate(self, request):
...         return QueryResult(key=request.key, status="succeeded", values={"y": 2.0})
"""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from oracles.protocol import JobHandle, QueryRequest, QueryResult
from oracles.safe import describe


class PooledOracle(ABC):
    """Thread-pool futures keyed by idempotency key (see module docstring).

    Args:
        max_workers: evaluations running at once.
        thread_name_prefix: names the pool's threads (seen in stack dumps).
    """

    def __init__(self, *, max_workers: int, thread_name_prefix: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers,
                                        thread_name_prefix=thread_name_prefix)
        self._futures: dict[str, Future[QueryResult]] = {}
        self._lock = threading.Lock()

    @abstractmethod
    def _evaluate(self, request: QueryRequest) -> QueryResult:
        """Evaluate one design (runs in a pool thread)."""

    def submit(self, requests: Sequence[QueryRequest]) -> list[JobHandle]:
        """Queue each new key; a key already queued or done is not evaluated again."""
        with self._lock:
            for request in requests:
                if request.key not in self._futures:
                    self._futures[request.key] = self._pool.submit(self._evaluate, request)
        return [JobHandle(key=r.key, job_id=r.key, metadata={}) for r in requests]

    def poll(self, handles: Sequence[JobHandle]) -> list[QueryResult]:
        """pending (queued), running, a finished result, or unknown (never submitted here)."""
        out = []
        for handle in handles:
            with self._lock:
                future = self._futures.get(handle.key)
            if future is None:
                out.append(QueryResult(key=handle.key, status="unknown"))
            elif future.cancelled():
                out.append(QueryResult(key=handle.key, status="cancelled"))
            elif future.done():
                exc = future.exception()
                out.append(future.result() if exc is None else
                           QueryResult(key=handle.key, status="failed", error=describe(exc)))
            else:
                out.append(QueryResult(key=handle.key,
                                       status="running" if future.running() else "pending"))
        return out

    def cancel(self, handles: Sequence[JobHandle]) -> None:
        """Cancel queued evaluations (running ones finish; their result is kept)."""
        with self._lock:
            for handle in handles:
                future = self._futures.get(handle.key)
                if future is not None:
                    future.cancel()
