"""Closed-form setups shared by the DAS tests (imported as a plain module; unique name)."""
from __future__ import annotations

import itertools

import torch
from torch import Tensor

from optimizer.das.particles import DiffusionParticles
from optimizer.priors.gaussian_mixture import GaussianMixturePrior


def three_mode_prior(device, dtype=torch.float32) -> GaussianMixturePrior:
    """Three unequal-weight, well separated modes in d = 2 with different covariances."""
    means = torch.tensor([[-3.0, 0.0], [0.0, 3.0], [3.0, -1.0]])
    covs = torch.stack([0.3 * torch.eye(2), torch.tensor([[0.5, 0.1], [0.1, 0.3]]),
                        0.2 * torch.eye(2)])
    weights = torch.tensor([0.5, 0.3, 0.2])
    return GaussianMixturePrior(means.to(device, dtype), covs.to(device, dtype),
                                weights.to(device, dtype))


def paper_toy_prior(device, dtype=torch.float32) -> GaussianMixturePrior:
    """The DAS paper's toy: 9 modes on {-4, 0, 4}², covariance 0.3 I, equal weights."""
    grid = torch.tensor(list(itertools.product([-4.0, 0.0, 4.0], repeat=2)))
    return GaussianMixturePrior(grid.to(device, dtype), (0.3 * torch.eye(2)).repeat(9, 1, 1)
                                .to(device, dtype), torch.ones(9, device=device, dtype=dtype))


class ReferenceBugParticles(DiffusionParticles):
    """Resampling as the reference implementation does it: gradient and look-ahead stay put."""

    def __getitem__(self, ancestors: Tensor) -> DiffusionParticles:
        moved = super().__getitem__(ancestors)
        return moved.replace(lookahead=self.lookahead, grad=self.grad)
