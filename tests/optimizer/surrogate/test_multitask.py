"""The multi-fidelity surrogate (``optimizer.surrogate.multitask``): a BoTorch MultiTaskGP whose
expensive task learns from a correlated cheap task, warm starts, and the batch picks."""
from __future__ import annotations

import pytest
import torch

from optimizer.errors import SurrogateError
from optimizer.surrogate.multitask import MultiTaskSurrogate


def f(z: torch.Tensor) -> torch.Tensor:
    """The expensive function: a bowl with its top at (0.7, 0.3)."""
    return -((z - torch.tensor([0.7, 0.3], dtype=z.dtype)) ** 2).sum(-1) * 4.0


def _data(seed: int = 0) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z_main = torch.rand(4, 2, generator=g, dtype=torch.float64)
    z_cheap = torch.rand(40, 2, generator=g, dtype=torch.float64)
    # the cheap oracle: another offset and scale, a smooth bias and noise
    y_cheap = 3.0 * f(z_cheap) + 5.0 + 0.2 * torch.sin(3 * z_cheap[:, 0]) \
        + 0.05 * torch.randn(40, generator=g, dtype=torch.float64)
    bounds = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    return [z_main, z_cheap], [f(z_main), y_cheap], bounds


def test_expensive_task_learns_from_the_cheap_one() -> None:
    Z, Y, bounds = _data()
    mt = MultiTaskSurrogate.fit(Z, Y, bounds=bounds, seed=0)
    grid = torch.rand(300, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    mean, std = mt.predict(grid)
    truth = f(grid)
    corr = torch.corrcoef(torch.stack([mean, truth]))[0, 1]
    assert corr > 0.9  # 4 expensive results alone cannot place a 2-d bowl's top this well
    assert mt.task_correlation[0] == pytest.approx(1.0) and mt.task_correlation[1] > 0.5
    assert (std >= 0).all() and mt.counts == [4, 40]
    # in the expensive oracle's own units (the cheap one's offset and scale are not leaked)
    assert abs(float(mean.mean() - truth.mean())) < 0.5
    # the expensive pick goes near the top
    picks = mt.pick_nei(grid, 3, observed=Z[0])
    assert len(set(picks)) == 3 and float(truth[picks].max()) > float(truth.quantile(0.9))
    ucb = mt.pick_ucb(grid, 5, beta=1.0, pending=Z[0][:1])
    assert len(set(ucb)) == 5


def test_hyperparameters_reused_without_refit() -> None:
    Z, Y, bounds = _data()
    first = MultiTaskSurrogate.fit(Z, Y, bounds=bounds, seed=0)
    more_Z = [Z[0], torch.cat([Z[1], torch.rand(5, 2, dtype=torch.float64)])]
    more_Y = [Y[0], torch.cat([Y[1], f(more_Z[1][-5:]) * 3.0 + 5.0])]
    again = MultiTaskSurrogate.fit(more_Z, more_Y, bounds=bounds, seed=0,
                                   previous=first.hyperparameters, refit=False)
    for k, v in first.hyperparameters.items():
        assert torch.equal(again.hyperparameters[k], v), k
    assert again.counts == [4, 45]


def test_too_few_results_refused() -> None:
    Z, Y, bounds = _data()
    with pytest.raises(SurrogateError, match="needs >= 2 results"):
        MultiTaskSurrogate.fit([Z[0][:1], Z[1]], [Y[0][:1], Y[1]], bounds=bounds)
