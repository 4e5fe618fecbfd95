"""Round 0's maximin batch spreads out and avoids known designs; crash points SIGKILL on cue."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np

from optimizer.campaign.spacefill import maximin_select


def _min_pairwise(X: np.ndarray) -> float:
    d = np.linalg.norm(X[:, None] - X[None], axis=-1)
    return float(d[np.triu_indices(len(X), 1)].min())


def test_maximin_spreads_better_than_random() -> None:
    X = np.random.default_rng(0).normal(size=(400, 3))
    picked = maximin_select(X, 8, seed=1)
    assert len(set(picked.tolist())) == 8
    rng = np.random.default_rng(2)
    random_spreads = [_min_pairwise(X[rng.choice(400, 8, replace=False)]) for _ in range(50)]
    assert _min_pairwise(X[picked]) > max(random_spreads)
    assert (maximin_select(X, 8, seed=1) == picked).all()  # deterministic


def test_maximin_avoids_observed_points() -> None:
    X = np.concatenate([np.zeros((50, 2)) + np.random.default_rng(0).normal(scale=0.01, size=(50, 2)),
                        np.array([[5.0, 5.0], [-5.0, 5.0]])])
    picked = maximin_select(X, 2, seed=0, avoid=np.array([[0.0, 0.0]]))
    assert set(picked.tolist()) == {50, 51}


def test_crash_point_kills_on_nth_hit() -> None:
    code = (
        "from optimizer.campaign.crashpoints import crash_point\n"
        "for i in range(5):\n"
        "    crash_point('outbox'); crash_point('polling'); print(i, flush=True)\n"
    )
    env = {**os.environ, "TILTLOOP_CRASH_AT": "polling:3"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert proc.stdout.split() == ["0", "1"]
    env.pop("TILTLOOP_CRASH_AT")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and len(proc.stdout.split()) == 5
