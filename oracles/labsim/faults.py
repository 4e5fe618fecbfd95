"""Fault injection for the lab simulator: the ways a real lab API misbehaves.

Request faults hit the job endpoints (``POST /jobs``, ``GET /jobs/{id}``, cancel), never
``/stats`` or ``/health``:

- ``"429"``: rejected before processing, with a ``Retry-After`` header;
- ``"500"``: the request IS processed (a job may have been created), then a 500 is returned;
- ``"timeout"``: processed, then the reply is held for ``delay_s`` (longer than the client waits);
- ``"drop"``: processed, then the connection is closed without any reply;
- ``"malformed"``: processed, then a 200 with a truncated, unparseable JSON body.

Evaluation fault ``"nan"``: a finished job reports NaN values (written as the non-standard JSON
token ``NaN``, as a sloppy lab server would).

Each request first takes the next entry of ``script`` (``"ok"`` = no fault); once the script is
spent, faults are drawn with ``rates`` from a generator seeded by ``seed``.

>>> plan = FaultPlan(script=["500", "ok", "drop"], rates={"429": 0.1}, seed=0)
"""
from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import numpy as np

from oracles.errors import OracleConfigError

REQUEST_FAULTS: tuple[str, ...] = ("429", "500", "timeout", "drop", "malformed")
FAULT_KINDS: tuple[str, ...] = (*REQUEST_FAULTS, "nan")


class Uniform(Protocol):
    """A source of uniform draws in [0, 1): ``random.Random`` or ``numpy.random.Generator``."""

    def random(self) -> float: ...


def draw_fault(rng: Uniform, rates: Mapping[str, float], kinds: Iterable[str]) -> str | None:
    """One draw: fault ``kind`` with probability ``rates[kind]`` (rates summing to at most 1),
    else None (also used by the fault-injecting proxy of ``tests/faults``)."""
    draw, edge = rng.random(), 0.0
    for kind in kinds:
        edge += rates.get(kind, 0.0)
        if draw < edge:
            return kind
    return None


class FaultPlan:
    """Which faults the simulator injects, scripted and/or at random (see module docstring).

    Args:
        rates: fault kind -> probability per request (per evaluation for ``"nan"``).
        script: fault kinds (or ``"ok"``) for the first requests, in order.
        seed: seed of the random draws.
        delay_s: how long a ``"timeout"`` reply is held.
        retry_after_s: the ``Retry-After`` value sent with a 429 (seconds, may be fractional).
    """

    def __init__(self, rates: Mapping[str, float] | None = None, script: Iterable[str] = (), *,
                 seed: int = 0, delay_s: float = 2.0, retry_after_s: float = 0.0) -> None:
        self.rates = {str(k): float(v) for k, v in (rates or {}).items()}
        for kind, rate in self.rates.items():
            if kind not in FAULT_KINDS:
                raise OracleConfigError(f"unknown fault {kind!r}; choose from {FAULT_KINDS}")
            if not 0.0 <= rate <= 1.0:
                raise OracleConfigError(f"fault rate for {kind!r} must be in [0, 1], got {rate}")
        if sum(self.rates.get(k, 0.0) for k in REQUEST_FAULTS) > 1.0:
            raise OracleConfigError(f"request fault rates must sum to <= 1, got {self.rates}")
        self.script = [str(s) for s in script]
        for entry in self.script:
            if entry not in (*REQUEST_FAULTS, "ok"):
                raise OracleConfigError(f"fault script entry {entry!r} must be 'ok' or one of "
                                        f"{REQUEST_FAULTS}")
        if delay_s < 0 or retry_after_s < 0:
            raise OracleConfigError("delay_s and retry_after_s must be >= 0")
        self.delay_s = float(delay_s)
        self.retry_after_s = float(retry_after_s)
        self.injected: Counter[str] = Counter()
        self._rng = np.random.default_rng(seed)
        self._position = 0
        self._lock = threading.Lock()

    @classmethod
    def parse(cls, specs: Iterable[str], script: str = "", **kwargs: Any) -> FaultPlan:
        """From CLI text: ``specs`` like ``["500=0.1", "drop=0.05"]``, ``script`` like
        ``"500,ok,drop"``."""
        rates = {}
        for spec in specs:
            kind, sep, rate = spec.partition("=")
            try:
                rates[kind.strip()] = float(rate)
            except ValueError:
                raise OracleConfigError(f"--fault {spec!r} must look like KIND=RATE, e.g. "
                                        f"500=0.1") from None
            if not sep:
                raise OracleConfigError(f"--fault {spec!r} must look like KIND=RATE")
        entries = [s.strip() for s in script.split(",") if s.strip()]
        return cls(rates, entries, **kwargs)

    def next_request_fault(self) -> str | None:
        """The fault for the next job request, or None."""
        with self._lock:
            if self._position < len(self.script):
                fault: str | None = self.script[self._position]
                self._position += 1
                fault = None if fault == "ok" else fault
            else:
                fault = draw_fault(self._rng, self.rates, REQUEST_FAULTS)
            if fault:
                self.injected[fault] += 1
            return fault

    def next_evaluation_is_nan(self) -> bool:
        """Whether the evaluation now finishing reports NaN values."""
        rate = self.rates.get("nan", 0.0)
        with self._lock:
            hit = rate > 0 and self._rng.random() < rate
            if hit:
                self.injected["nan"] += 1
            return hit
