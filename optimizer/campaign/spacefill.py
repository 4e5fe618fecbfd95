"""Round 0's space-filling batch: greedy farthest-point (maximin) selection in feature space.

`x_{j+1} = argmax_{x ∈ C} min_{y ∈ S ∪ O} ‖x − y‖`, `S` the points picked so far, `O` designs
already observed or pending (so a plain-prior round never re-asks what the oracle already has).

Steps: 1. standardize features per dimension (so no dimension dominates by scale); 2. start
from the candidate farthest from `O`, or from a seeded random candidate when `O` is empty;
3. add the candidate farthest from everything picked, q times.

    >>> idx = maximin_select(np.random.default_rng(0).random((100, 2)), 4, seed=0)
    >>> len(set(idx.tolist()))
    4
"""
from __future__ import annotations

import numpy as np


def maximin_select(
    features: np.ndarray, q: int, *, seed: int, avoid: np.ndarray | None = None
) -> np.ndarray:
    """Indices of ``q`` spread-out rows of ``features`` (`M x k`), away from ``avoid`` (`n x k`)."""
    F = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    if q > len(F):
        raise ValueError(f"cannot pick q={q} designs from {len(F)} candidates")
    mu, sd = F.mean(0), F.std(0)
    sd[sd == 0] = 1.0
    Z = (F - mu) / sd
    dist = np.full(len(Z), np.inf)
    if avoid is not None and len(avoid):
        A = (np.asarray(avoid, dtype=np.float64).reshape(len(avoid), -1) - mu) / sd
        for a in A:
            dist = np.minimum(dist, np.linalg.norm(Z - a, axis=1))
        first = int(np.argmax(dist))
    else:
        first = int(np.random.default_rng(seed).integers(len(Z)))
    picked = [first]
    dist = np.minimum(dist, np.linalg.norm(Z - Z[first], axis=1))
    for _ in range(q - 1):
        dist[picked] = -np.inf
        nxt = int(np.argmax(dist))
        picked.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(Z - Z[nxt], axis=1))
    return np.asarray(picked, dtype=np.int64)
