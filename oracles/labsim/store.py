"""The lab simulator's job store: idempotent by key, evaluation counted per key, optionally
persisted to a JSON file so a restarted simulator still knows its jobs.

A job is evaluated lazily, the first time it is read after ``ready_at`` (creation time plus the
oracle's ``latency_s``), exactly once: ``evaluations[key]`` counts evaluations, and tests assert
it never exceeds 1.
"""
from __future__ import annotations

import json
import math
import os
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from oracles.errors import OracleConfigError
from oracles.labsim.faults import FaultPlan
from oracles.protocol import design_from_json
from oracles.simulated.base import SimulatedOracle

TERMINAL = ("succeeded", "failed", "cancelled")


class JobConflict(Exception):
    """The idempotency key is already used by a job with a different design."""


class JobRejected(Exception):
    """The design cannot be evaluated by this oracle (wrong shape, out of range)."""


class JobStore:
    """Jobs of one simulated lab.

    Args:
        oracle: the simulated oracle that evaluates designs.
        faults: source of ``"nan"`` evaluation faults.
        state_path: JSON file to load at start and rewrite after every change (None: memory only).
    """

    def __init__(self, oracle: SimulatedOracle, faults: FaultPlan | None = None,
                 state_path: str | Path | None = None) -> None:
        self.oracle = oracle
        self.faults = faults or FaultPlan()
        self.state_path = Path(state_path) if state_path else None
        self.jobs: dict[str, dict[str, Any]] = {}
        self.by_key: dict[str, str] = {}
        self.evaluations: Counter[str] = Counter()
        self.requests = 0
        self._lock = threading.RLock()
        if self.state_path and self.state_path.exists():
            self._load()

    # ---- persistence -----------------------------------------------------------------------
    def _load(self) -> None:
        assert self.state_path is not None
        try:
            state = json.loads(self.state_path.read_text())
            self.jobs = {job["id"]: job for job in state["jobs"]}
            self.evaluations = Counter(state["evaluations"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise OracleConfigError(f"lab simulator state file {self.state_path} is unreadable "
                                    f"({exc}); move it away to start with no jobs") from None
        self.by_key = {job["key"]: job_id for job_id, job in self.jobs.items()}

    def _save(self) -> None:
        if self.state_path is None:
            return
        state = {"jobs": list(self.jobs.values()), "evaluations": dict(self.evaluations)}
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        with open(tmp, "w") as fh:
            json.dump(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.state_path)  # atomic: a crash leaves the old or the new file

    # ---- operations --------------------------------------------------------------------------
    def create(self, key: str, design_json: Any, metadata: dict[str, Any]) -> tuple[dict, bool]:
        """The job for ``key`` (created now, or the existing one) and whether it was created.

        Raises:
            JobConflict: ``key`` names a job with another design.
            JobRejected: the oracle cannot take this design.
        """
        try:
            design = design_from_json(design_json)
        except ValueError as exc:
            raise JobRejected(str(exc)) from None
        with self._lock:
            existing = self.by_key.get(key)
            if existing is not None:
                job = self.jobs[existing]
                old = np.asarray(job["design"], dtype=np.float64)
                if old.shape != design.shape or not np.array_equal(old, design):
                    raise JobConflict(f"Idempotency-Key {key!r} was already used for job "
                                      f"{existing} with a different design; use a new key")
                return self._advance(job), False
        try:
            self.oracle.check_design(design)
        except ValueError as exc:
            raise JobRejected(f"design rejected by {self.oracle.name}: {exc}") from None
        with self._lock:
            if key in self.by_key:  # lost a race with an identical request: same job
                return self._advance(self.jobs[self.by_key[key]]), False
            now = time.time()
            job = {"id": uuid.uuid4().hex, "key": key, "status": "running",
                   "design": design.tolist(), "metadata": dict(metadata),
                   "created_at": now, "ready_at": now + self.oracle.latency_s,
                   "values": None, "noise": None, "error": None}
            self.jobs[job["id"]] = job
            self.by_key[key] = job["id"]
            self._save()
            return self._advance(job), True

    def get(self, job_id: str) -> dict | None:
        """The job (evaluated first if it is due), or None."""
        with self._lock:
            job = self.jobs.get(job_id)
            return None if job is None else self._advance(job)

    def cancel(self, job_id: str) -> dict | None:
        """Cancel a job that has not finished; return it, or None if unknown."""
        with self._lock:
            job = self.jobs.get(job_id)
            if job is None:
                return None
            job = self._advance(job)
            if job["status"] not in TERMINAL:
                job["status"] = "cancelled"
                self._save()
            return job

    def count_request(self) -> None:
        """Count one job request (for ``/stats``)."""
        with self._lock:
            self.requests += 1

    def stats(self) -> dict[str, Any]:
        """Evaluation counts per key and totals (the simulator's ``GET /stats``)."""
        with self._lock:
            statuses = Counter(job["status"] for job in self.jobs.values())
            return {"evaluations": dict(self.evaluations), "jobs": len(self.jobs),
                    "statuses": dict(statuses), "requests": self.requests,
                    "faults": dict(self.faults.injected)}

    def _advance(self, job: dict) -> dict:
        # caller holds the lock: evaluation happens at most once per job
        if job["status"] in TERMINAL or time.time() < job["ready_at"]:
            return job
        self.evaluations[job["key"]] += 1
        result = self.oracle.evaluate(job["key"], np.asarray(job["design"], dtype=np.float64))
        job["status"], job["error"] = result.status, result.error
        job["values"], job["noise"] = result.values, result.noise
        if result.status == "succeeded" and self.faults.next_evaluation_is_nan():
            job["values"] = {name: math.nan for name in (result.values or {})}
        self._save()
        return job
