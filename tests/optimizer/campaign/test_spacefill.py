"""Round 0's picks (``spacefill``): maximin takes the sample's extremes; ``typical_select`` (a
Pareto campaign's round 0) takes one representative per cluster of the sample's density, never
an outlier, steers clear of known designs, and is a pure function of its seed."""
from __future__ import annotations

import numpy as np
import pytest

from optimizer.campaign.spacefill import maximin_select, typical_select

CENTERS = np.array([[-5.0, -5.0], [-5.0, 5.0], [5.0, -5.0], [5.0, 5.0]])


def mixture(seed: int, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points in four tight clusters plus 8 far outliers (the prior's tails); the cluster
    of each point (-1: outlier)."""
    rng = np.random.default_rng(seed)
    label = rng.integers(4, size=n)
    pts = CENTERS[label] + rng.normal(size=(n, 2))
    far = rng.normal(size=(8, 2))
    far = 20.0 * far / np.linalg.norm(far, axis=1, keepdims=True)
    return np.concatenate([pts, far]), np.concatenate([label, np.full(8, -1)])


@pytest.mark.parametrize("seed", range(10))
def test_typical_picks_one_per_cluster_and_no_outlier(seed: int) -> None:
    F, label = mixture(seed)
    idx = typical_select(F, 4, seed=seed)
    assert sorted(label[idx].tolist()) == [0, 1, 2, 3]
    # maximin on the same sample goes for the outliers (what the typical pick avoids)
    assert (label[maximin_select(F, 4, seed=seed)] == -1).sum() >= 3


def test_typical_picks_are_central_in_a_gaussian_sample() -> None:
    """Over 20 seeds of a standard normal 8-d sample, the typical picks sit well inside the
    sample (mean radius below its median) while maximin's sit in its outer tenth."""
    typ, mm, med, p90 = [], [], [], []
    for seed in range(20):
        F = np.random.default_rng(seed).normal(size=(256, 8))
        r = np.linalg.norm(F, axis=1)
        typ.append(r[typical_select(F, 4, seed=seed)].mean())
        mm.append(r[maximin_select(F, 4, seed=seed)].mean())
        med.append(np.median(r))
        p90.append(np.quantile(r, 0.9))
    assert np.mean(typ) < np.mean(med) < np.mean(p90) < np.mean(mm)


def test_typical_avoids_known_designs_and_is_seeded() -> None:
    F, label = mixture(0)
    idx = typical_select(F, 2, seed=1, avoid=CENTERS[:2] + 0.1)  # clusters 0 and 1 are known
    assert sorted(label[idx].tolist()) == [2, 3]
    assert np.array_equal(typical_select(F, 4, seed=3), typical_select(F, 4, seed=3))
    idx = typical_select(F[:5], 5, seed=0)  # as many picks as rows: each row once
    assert sorted(idx.tolist()) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="q=6.*5 candidates"):
        typical_select(F[:5], 6, seed=0)
