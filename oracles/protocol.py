"""The oracle protocol: what the campaign loop needs from anything that scores designs.

An oracle is asynchronous in meaning but synchronous in calls (the loop calls it from its driver
thread):

1. ``submit(requests)`` hands designs over, each with an idempotency key, and returns quickly with
   one :class:`JobHandle` per request. Submitting the same key twice never evaluates twice.
2. The loop saves every handle's JSON ``metadata`` (and ``job_id``) before anything else: it is the
   only way back to the job after a crash.
3. ``poll(handles)`` returns one :class:`QueryResult` per handle, in order. Status ``"unknown"``
   means the oracle has no such job (e.g. a 404): the loop resubmits with the SAME key.
4. ``cancel(handles)`` asks to stop jobs; ``close()`` releases connections and processes.

Conventions: values are reported as measured (whether larger or smaller is better is the
campaign's ``objectives.direction``, applied by the loop); ``noise`` is the observation-noise
VARIANCE per objective (BoTorch's ``Yvar``); designs are numpy arrays of any shape (`d` vectors,
`8 x 8` images).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, get_args, runtime_checkable

import numpy as np

Status = Literal["pending", "running", "succeeded", "failed", "cancelled", "unknown"]
STATUSES: tuple[str, ...] = get_args(Status)
TERMINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


@dataclass(frozen=True)
class QueryRequest:
    """One design to score.

    Attributes:
        key: idempotency key, unique per query of a campaign; resubmissions reuse it.
        design: the design as a numpy array of any shape (e.g. `d` or `8 x 8`).
        metadata: JSON-serializable extras passed through to the oracle.
    """

    key: str
    design: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobHandle:
    """What the loop must persist to find a query again.

    Attributes:
        key: the query's idempotency key.
        job_id: the oracle's own id for the job, when it has one.
        metadata: JSON; saved before anything else, the only handle for re-polling after a crash.
    """

    key: str
    job_id: str | None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class QueryResult:
    """The state of one query as last seen.

    Attributes:
        key: the query's idempotency key.
        status: one of ``STATUSES``; ``"unknown"`` = the oracle has no such job (resubmit, same key).
        values: objective name -> finite float as measured, set iff ``status == "succeeded"``.
        noise: objective name -> observation-noise variance, or None when the oracle gives none.
        error: why the query failed, or a transient problem met while it stays pending.
        metadata: JSON extras from the oracle.
    """

    key: str
    status: Status
    values: dict[str, float] | None = None
    noise: dict[str, float] | None = None
    error: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        """True for succeeded, failed and cancelled."""
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True)
class Evaluation:
    """What a function returns when it wants to give more than plain values (noise, metadata)."""

    values: Mapping[str, float]
    noise: Mapping[str, float] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Oracle(Protocol):
    """Anything that scores designs: see the module docstring for the call sequence."""

    name: str
    objectives: tuple[str, ...]

    def submit(self, requests: Sequence[QueryRequest]) -> list[JobHandle]:
        """Start one job per request (idempotent per key) and return their handles in order."""
        ...

    def poll(self, handles: Sequence[JobHandle]) -> list[QueryResult]:
        """Return the current state of each handle's job, in order."""
        ...

    def cancel(self, handles: Sequence[JobHandle]) -> None:
        """Ask the oracle to stop these jobs (best effort)."""
        ...

    def close(self) -> None:
        """Release connections, threads and processes."""
        ...


def design_to_json(design: np.ndarray) -> list[Any]:
    """A design as nested JSON lists of floats (shape preserved by nesting).

    >>> design_to_json(np.array([[0.5, 1.0]]))
    [[0.5, 1.0]]
    """
    arr = np.asarray(design, dtype=np.float64)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    return arr.tolist()


def design_from_json(value: Any, *, what: str = "design") -> np.ndarray:
    """Inverse of :func:`design_to_json`; raises ``ValueError`` naming ``what`` on ragged or
    non-numeric input."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be a (nested) list of numbers of one shape: {exc}") from None
    if arr.ndim == 0:
        raise ValueError(f"{what} must be a list of numbers, got the scalar {value!r}")
    return arr
