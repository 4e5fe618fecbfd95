"""Shared helpers of the oracle tests (real servers, real processes; small sizes)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from oracles.protocol import JobHandle, QueryRequest, QueryResult

REPO_ROOT = Path(__file__).resolve().parents[2]


def requests_for(keys: list[str], dim: int = 2, seed: int = 0) -> list[QueryRequest]:
    """Designs in the unit cube, one per key, reproducible."""
    rng = np.random.default_rng(seed)
    return [QueryRequest(key=k, design=rng.random(dim), metadata={"i": i})
            for i, k in enumerate(keys)]


def poll_until_done(oracle, handles: list[JobHandle], timeout_s: float = 30.0,
                    interval_s: float = 0.02) -> list[QueryResult]:
    """Poll until every result is terminal; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        results = oracle.poll(handles)
        if all(r.done for r in results):
            return results
        if time.monotonic() > deadline:
            raise AssertionError(f"queries not done after {timeout_s} s: {results}")
        time.sleep(interval_s)


def subprocess_env() -> dict[str, str]:
    """The environment for a child Python that must import this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def process_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (absent, or a zombie nobody reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True
