"""Pareto front, hypervolume, reference point and ParEGO weights (``optimizer.surrogate.pareto``)
against hand-computed examples."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from optimizer.surrogate.pareto import (
    hypervolume,
    hypervolume_trace,
    pareto_mask,
    parego_weights,
    reference_point,
)
from optimizer.surrogate.scalarize import make_scalarization


def test_front_and_hypervolume_by_hand() -> None:
    # maximized: (1,3), (2,2), (3,1) are the front; (1,1) is dominated; a NaN row never counts
    V = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0], [1.0, 1.0], [np.nan, 9.0]])
    assert pareto_mask(V).tolist() == [True, True, True, False, False]
    # staircase above (0, 0): 3·1 + 2·1 + 1·1 = 6
    assert hypervolume(V, [0.0, 0.0]) == pytest.approx(6.0)
    # above (1.5, 0): only x > 1.5 counts: (2,2) gives 0.5·2, (3,1) adds 1·1
    assert hypervolume(V, [1.5, 0.0]) == pytest.approx(2.0)
    assert hypervolume(V, [5.0, 5.0]) == 0.0
    assert hypervolume_trace(V, [0.0, 0.0], [1, 2, 3, 4, 5]) == pytest.approx([3, 5, 6, 6, 6])


def test_three_objective_hypervolume_by_hand() -> None:
    V = np.array([[2.0, 1.0, 1.0], [1.0, 2.0, 1.0]])
    # two 1x1x1-overlapping boxes: 2 + 2 − 1
    assert hypervolume(V, [0.0, 0.0, 0.0]) == pytest.approx(3.0)


def test_reference_point_given_and_inferred() -> None:
    V = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0], [0.0, 0.0]])
    # nadir of the front (1, 1) minus a tenth of its range (2, 2)
    assert reference_point(V).tolist() == pytest.approx([0.8, 0.8])
    # a given entry is kept, the other inferred
    assert reference_point(V, (None, -5.0)).tolist() == pytest.approx([0.8, -5.0])
    assert reference_point(V, (0.5, 0.25)).tolist() == pytest.approx([0.5, 0.25])
    # one point: one unit below it; no data: zeros
    assert reference_point(V[:1]).tolist() == pytest.approx([0.0, 2.0])
    assert reference_point(np.zeros((0, 2))).tolist() == [0.0, 0.0]


def test_parego_weights_are_reproducible_and_on_the_simplex() -> None:
    ws = [parego_weights(7, r, c, 3) for r in range(30) for c in range(4)]
    for w in ws:
        assert len(w) == 3 and min(w) >= 0 and sum(w) == pytest.approx(1.0)
    assert parego_weights(7, 3, 1, 3) == parego_weights(7, 3, 1, 3)  # a resumed round
    assert parego_weights(7, 3, 1, 3) != parego_weights(7, 3, 2, 3)  # another chunk
    assert parego_weights(7, 3, 1, 3) != parego_weights(8, 3, 1, 3)  # another campaign
    assert parego_weights(7, 3, 1, 3, "p1") != parego_weights(7, 3, 1, 3)  # another population
    # uniform on the 2-simplex: w_0 ~ Beta(1, 2), mean 1/3, and both halves of the front drawn
    w0 = np.array([w[0] for w in ws])
    assert abs(w0.mean() - 1 / 3) < 4 * np.sqrt(1 / 18 / len(w0))
    two = np.array([parego_weights(1, r, 0, 2)[0] for r in range(400)])  # Uniform(0, 1)
    assert abs(two.mean() - 0.5) < 4 * np.sqrt(1 / 12 / 400)
    assert (two < 0.1).any() and (two > 0.9).any()


def test_parego_scalarization_is_augmented_chebyshev() -> None:
    Y = torch.tensor([[0.0, 0.0], [1.0, 2.0]], dtype=torch.float64)
    g = make_scalarization(Y, maximize=True, weights=(0.25, 0.75), kind="parego", rho=0.05)
    # scaled to [0, 1] by the data's range: (0.5, 0.5) → min(0.125, 0.375) + 0.05·0.5
    out = g(torch.tensor([[0.5, 1.0]], dtype=torch.float64))
    assert float(out) == pytest.approx(0.125 + 0.05 * 0.5)
