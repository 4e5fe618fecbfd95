"""Round 0's space-filling batch: greedy farthest-point (maximin) selection in feature space, or
(a Pareto campaign's round 0) k-means medoids (``typical_select``).

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


def _standardized(features: np.ndarray, q: int, avoid: np.ndarray | None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``features`` (`M x k`) and ``avoid`` (`n x k`, or `0 x k`) standardized by the features'
    per-column mean and std (a constant column keeps scale 1)."""
    F = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    if q > len(F):
        raise ValueError(f"cannot pick q={q} designs from {len(F)} candidates")
    mu, sd = F.mean(0), F.std(0)
    sd[sd == 0] = 1.0
    A = (np.zeros((0, F.shape[1])) if avoid is None or not len(avoid) else
         np.asarray(avoid, dtype=np.float64).reshape(len(avoid), -1))
    return (F - mu) / sd, (A - mu) / sd


def maximin_select(
    features: np.ndarray, q: int, *, seed: int, avoid: np.ndarray | None = None
) -> np.ndarray:
    """Indices of ``q`` spread-out rows of ``features`` (`M x k`), away from ``avoid`` (`n x k`)."""
    Z, A = _standardized(features, q, avoid)
    dist = np.full(len(Z), np.inf)
    if len(A):
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


def typical_select(
    features: np.ndarray, q: int, *, seed: int, avoid: np.ndarray | None = None,
    iterations: int = 25, restarts: int = 8,
) -> np.ndarray:
    """Indices of ``q`` representative rows of ``features`` (`M x k`): k-means medoids.

    Maximin takes the sample's extremes (the farthest points are the prior's tails); these
    picks follow the sample's density instead while staying apart: Lloyd's k-means with ``q``
    free centers (k-means++ start, seeded) and the ``avoid`` rows (`n x k`, known designs) as
    fixed centers, the lowest-cost of ``restarts`` runs, then per free center the nearest row
    not yet picked. A Pareto campaign's round 0 uses it (``rounds.RoundGenerator.select``):
    typical designs dominate a larger hypervolume than the prior's extremes.
    """
    Z, fixed = _standardized(features, q, avoid)
    rng = np.random.default_rng(seed)
    best, best_cost = None, np.inf
    for _ in range(restarts):  # k-means++ starts favour outliers: keep the lowest-cost run
        C, cost = _lloyd(Z, fixed, q, rng, iterations)
        if cost < best_cost:
            best, best_cost = C, cost
    assert best is not None
    picked: list[int] = []
    for c in best:  # the medoid: the nearest row to each free center, each row once
        d = ((Z - c) ** 2).sum(-1)
        d[picked] = np.inf
        picked.append(int(np.argmin(d)))
    return np.asarray(picked, dtype=np.int64)


def _sqdist(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """`|A_i − B_j|²` (`a x b`) without the `a x b x k` difference array."""
    d = (A * A).sum(1)[:, None] - 2.0 * A @ B.T + (B * B).sum(1)[None, :]
    return np.maximum(d, 0.0)


def _lloyd(Z: np.ndarray, fixed: np.ndarray, q: int, rng: np.random.Generator,
           iterations: int) -> tuple[np.ndarray, float]:
    """One k-means run: ``q`` free centers (k-means++ start) beside the ``fixed`` ones; the free
    centers and the sum of squared distances to the nearest center."""
    centers = [Z[int(rng.integers(len(Z)))]] if not len(fixed) else []
    while len(centers) < q:  # k-means++: far from every center so far, by squared distance
        known = np.concatenate([fixed, np.asarray(centers).reshape(-1, Z.shape[1])])
        d2 = _sqdist(Z, known).min(1)
        p = d2 / d2.sum() if d2.sum() > 0 else np.full(len(Z), 1.0 / len(Z))
        centers.append(Z[int(rng.choice(len(Z), p=p))])
    C = np.asarray(centers)
    for _ in range(iterations):
        label = _sqdist(Z, np.concatenate([C, fixed])).argmin(1)
        new = np.stack([Z[label == j].mean(0) if (label == j).any() else C[j] for j in range(q)])
        if np.allclose(new, C):
            break
        C = new
    return C, float(_sqdist(Z, np.concatenate([C, fixed])).min(1).sum())
