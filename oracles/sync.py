"""Adapter: a fast synchronous Python function becomes an oracle.

The function takes one design (a numpy array) and returns a float (single objective), a mapping
objective -> float, or an :class:`oracles.protocol.Evaluation` (values with noise and metadata).
It runs inside ``submit`` (so only use this for functions that take milliseconds); results are kept
per key, so resubmitting a key never calls the function twice. Exceptions from the function become
failed queries with the exception as reason.

>>> oracle = SyncOracle(lambda x: -float((x ** 2).sum()), objectives=("y",))
>>> [h] = oracle.submit([QueryRequest("q1", np.zeros(2))])
>>> oracle.poll([h])[0].values
{'y': -0.0}
"""
from __future__ import annotations

import threading
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from oracles.errors import OracleConfigError, OracleReplyError
from oracles.protocol import Evaluation, JobHandle, QueryRequest, QueryResult
from oracles.validation import failed, validate_noise, validate_values

DesignFunction = Callable[[np.ndarray], Any]


def check_objectives(objectives: Sequence[str]) -> tuple[str, ...]:
    """Objective names as a non-empty tuple of distinct non-empty strings."""
    names = tuple(objectives) if not isinstance(objectives, str) else (objectives,)
    if not names or any(not isinstance(n, str) or not n for n in names) or len(set(names)) != len(names):
        raise OracleConfigError(f"objectives must be distinct non-empty names, got {objectives!r}; "
                                f"e.g. objectives=('yield',)")
    return names


def result_from_output(key: str, output: Any, objectives: Sequence[str]) -> QueryResult:
    """Turn a function's return value into a validated result (failed with reason if bad)."""
    noise: Any = None
    metadata: dict[str, Any] = {}
    if isinstance(output, Evaluation):
        values, noise, metadata = output.values, output.noise, dict(output.metadata)
    elif isinstance(output, Mapping):
        values = output
    elif len(objectives) == 1 and not isinstance(output, (str, bytes)):
        try:
            values = {objectives[0]: output.item() if isinstance(output, np.generic) else output}
        except AttributeError:
            values = {objectives[0]: output}
    else:
        return failed(key, f"function returned {type(output).__name__}; with objectives "
                           f"{list(objectives)} it must return a mapping name -> number")
    try:
        values = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in values.items()}
        clean = validate_values(values, objectives)
        clean_noise = validate_noise(noise, objectives)
    except (OracleReplyError, AttributeError) as exc:
        return failed(key, f"invalid result: {exc}", metadata)
    return QueryResult(key=key, status="succeeded", values=clean, noise=clean_noise,
                       metadata=metadata)


def call_safely(fn: DesignFunction, request: QueryRequest, objectives: Sequence[str]) -> QueryResult:
    """Run ``fn`` on one design; an exception becomes a failed result with its last frames."""
    try:
        output = fn(np.asarray(request.design))
    except Exception as exc:
        tail = "".join(traceback.format_exception(exc)[-3:]).strip()
        return failed(request.key, f"function raised {type(exc).__name__}: {exc} | {tail[-400:]}")
    return result_from_output(request.key, output, objectives)


class SyncOracle:
    """An oracle over a fast synchronous function (evaluated inside ``submit``).

    Args:
        fn: design -> float | mapping | Evaluation.
        objectives: names of the objectives (all maximized).
        name: shown in logs.
    """

    def __init__(self, fn: DesignFunction, objectives: Sequence[str] = ("y",), *,
                 name: str | None = None) -> None:
        if not callable(fn):
            raise OracleConfigError(f"fn must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.objectives = check_objectives(objectives)
        self.name = name or getattr(fn, "__name__", "sync")
        self._results: dict[str, QueryResult] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, objectives={self.objectives})"

    def submit(self, requests: Sequence[QueryRequest]) -> list[JobHandle]:
        """Evaluate each new key now; known keys are not evaluated again."""
        handles = []
        for request in requests:
            # Check and evaluate under one lock: two threads submitting the same key at once
            # must not both call the function (the functions are fast by contract).
            with self._lock:
                if request.key not in self._results:
                    self._results[request.key] = call_safely(self.fn, request, self.objectives)
            handles.append(JobHandle(key=request.key, job_id=request.key, metadata={}))
        return handles

    def poll(self, handles: Sequence[JobHandle]) -> list[QueryResult]:
        """The stored result per key; ``unknown`` for keys this process never saw."""
        with self._lock:
            return [self._results.get(h.key) or QueryResult(key=h.key, status="unknown")
                    for h in handles]

    def cancel(self, handles: Sequence[JobHandle]) -> None:
        """Nothing to cancel: evaluation finished inside ``submit``."""

    def close(self) -> None:
        """Nothing to release."""
