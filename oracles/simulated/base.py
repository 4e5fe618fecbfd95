"""Base class of simulated oracles (demos, tests, benchmarks, the lab simulator).

A subclass only says what a design scores, noise-free:

1. set ``objectives`` (a tuple of names, all MAXIMIZED) before calling ``super().__init__``;
2. implement ``score(design) -> dict[str, float]``;
3. optionally override ``check_design(design)`` to validate shape / range (raise ``ValueError``
   with a message naming the expected shape: the query then fails with that reason), and
   ``design_shape`` to say which shape it takes (a campaign compares it with its prior's before
   it starts; ``describe()`` reports it with the objectives, as a lab's ``GET /health`` does).

The base adds, all seeded: a fixed ``latency_s`` between submit and result, Gaussian observation
noise `y = f(x) + noise_std · ε` (reported as variance ``noise_std²``), and failures with
probability ``failure_rate``. The random draws of a query depend only on ``(seed, key)``, so a
result is reproducible whatever the order of evaluation. ``evaluations`` counts calls of
``evaluate`` per key.

>>> class Sphere(SimulatedOracle):
...     def __init__(self, **kw):
...         self.objectives = ("y",)
...         super().__init__(**kw)
...     def score(self, design):
...         return {"y": -float((design ** 2).sum())}
>>> oracle = Sphere(noise_std=0.1, seed=0)
"""
from __future__ import annotations

import hashlib
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from oracles.errors import OracleConfigError
from oracles.protocol import JobHandle, QueryRequest, QueryResult
from oracles.safe import describe as describe_error
from oracles.shape import LabDescription
from oracles.validation import failed, validate_result


def key_rng(seed: int, key: str) -> np.random.Generator:
    """A generator that depends only on ``(seed, key)``."""
    digest = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "little")
    return np.random.default_rng([int(seed), digest])


@dataclass
class _Job:
    design: np.ndarray
    ready_at: float
    result: QueryResult | None = None


class SimulatedOracle(ABC):
    """A seeded, noisy, slow and flaky oracle over a known function (see module docstring).

    Args:
        latency_s: seconds between submit and the result being available.
        noise_std: standard deviation of the Gaussian noise added to every objective.
        failure_rate: probability that a query fails (``status="failed"``).
        seed: seed of noise and failures.
        name: shown in logs; defaults to the class name.
    """

    objectives: tuple[str, ...]

    def __init__(self, *, latency_s: float = 0.0, noise_std: float = 0.0,
                 failure_rate: float = 0.0, seed: int = 0, name: str | None = None) -> None:
        if latency_s < 0 or noise_std < 0 or not 0.0 <= failure_rate <= 1.0:
            raise OracleConfigError(
                f"need latency_s >= 0, noise_std >= 0 and 0 <= failure_rate <= 1; got "
                f"latency_s={latency_s}, noise_std={noise_std}, failure_rate={failure_rate}")
        if not getattr(self, "objectives", None):
            raise OracleConfigError(f"{type(self).__name__} must set self.objectives before "
                                    f"calling SimulatedOracle.__init__")
        self.latency_s = float(latency_s)
        self.noise_std = float(noise_std)
        self.failure_rate = float(failure_rate)
        self.seed = int(seed)
        self.name = name or type(self).__name__
        self.evaluations: Counter[str] = Counter()
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(objectives={self.objectives}, latency_s={self.latency_s}, "
                f"noise_std={self.noise_std}, failure_rate={self.failure_rate}, seed={self.seed})")

    # ---- what a subclass provides -------------------------------------------------------
    @abstractmethod
    def score(self, design: np.ndarray) -> dict[str, float]:
        """Noise-free objective values of one (already checked) design, maximized."""

    def check_design(self, design: np.ndarray) -> np.ndarray:
        """Validate and return the design; raise ``ValueError`` naming the problem."""
        design = np.asarray(design, dtype=np.float64)
        if not np.all(np.isfinite(design)):
            raise ValueError("design contains NaN or inf")
        return design

    @property
    def design_shape(self) -> tuple[int, ...] | None:
        """The shape of one design this oracle takes (None: not known)."""
        return None

    def describe(self, timeout_s: float = 5.0) -> LabDescription:
        """Design shape and objective names (what the lab simulator's ``/health`` reports);
        ``timeout_s`` is unused, for the same call as :meth:`oracles.http.HttpOracle.describe`."""
        return LabDescription(self.design_shape, tuple(self.objectives))

    # ---- one evaluation ------------------------------------------------------------------
    def evaluate(self, key: str, design: np.ndarray) -> QueryResult:
        """Score one design now, with the seeded noise and failure of ``key``; counted."""
        with self._lock:
            self.evaluations[key] += 1
        rng = key_rng(self.seed, key)
        fail_draw, eps = rng.random(), rng.standard_normal(len(self.objectives))
        if fail_draw < self.failure_rate:
            return failed(key, f"simulated failure (failure_rate={self.failure_rate})")
        try:
            clean = self.score(self.check_design(design))
        except ValueError as exc:
            return failed(key, f"design rejected by {self.name}: {exc}")
        except Exception as exc:  # a bug in score() must not take the server down
            return failed(key, f"{self.name} failed to score the design: {describe_error(exc)}")
        values = {name: float(clean[name]) + self.noise_std * float(e)
                  for name, e in zip(self.objectives, eps)}
        noise = {name: self.noise_std ** 2 for name in self.objectives} if self.noise_std else None
        result = QueryResult(key=key, status="succeeded", values=values, noise=noise)
        return validate_result(result, self.objectives, key)

    # ---- the oracle protocol -------------------------------------------------------------
    def submit(self, requests: Sequence[QueryRequest]) -> list[JobHandle]:
        """Record each new key with its ready time; known keys are left as they are."""
        now = time.monotonic()
        with self._lock:
            for request in requests:
                if request.key not in self._jobs:
                    self._jobs[request.key] = _Job(np.asarray(request.design), now + self.latency_s)
        return [JobHandle(key=r.key, job_id=r.key, metadata={}) for r in requests]

    def poll(self, handles: Sequence[JobHandle]) -> list[QueryResult]:
        """running until ``latency_s`` has passed, then the (cached) evaluation."""
        out = []
        for handle in handles:
            with self._lock:
                job = self._jobs.get(handle.key)
            if job is None:
                out.append(QueryResult(key=handle.key, status="unknown"))
                continue
            if job.result is None and time.monotonic() >= job.ready_at:
                result = self.evaluate(handle.key, job.design)
                with self._lock:
                    if job.result is None:
                        job.result = result
            out.append(job.result or QueryResult(key=handle.key, status="running"))
        return out

    def cancel(self, handles: Sequence[JobHandle]) -> None:
        """Jobs not yet finished become cancelled."""
        with self._lock:
            for handle in handles:
                job = self._jobs.get(handle.key)
                if job is not None and job.result is None:
                    job.result = QueryResult(key=handle.key, status="cancelled")

    def close(self) -> None:  # noqa: B027 — a no-op default, not abstract: most oracles hold nothing
        """Nothing to release."""
