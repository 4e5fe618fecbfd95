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


B_LINEAR = torch.tensor([1.0, 0.5])
A_QUAD = torch.tensor([[0.6, 0.2], [0.2, 0.4]])
C_QUAD = torch.tensor([2.0, 2.0])


def linear(x: Tensor) -> Tensor:
    """`r(x) = bᵀx`."""
    return x @ B_LINEAR.to(x)


def quadratic(x: Tensor) -> Tensor:
    """`r(x) = -½ (x - c)ᵀ A (x - c)`."""
    d = x - C_QUAD.to(x)
    return -0.5 * ((d @ A_QUAD.to(x)) * d).sum(-1)


def exact_tilt(gm: GaussianMixturePrior, name: str, alpha: float = 1.0):
    """The exact ``TiltedMixture`` of ``gm`` tilted by ``linear`` or ``quadratic`` at `α`."""
    dev = gm.device
    return (gm.tilt_linear(B_LINEAR.to(dev), alpha) if name == "linear"
            else gm.tilt_quadratic(A_QUAD.to(dev), C_QUAD.to(dev), alpha))


def tilt_stats(res, exact: GaussianMixturePrior, weighted: bool = True) -> tuple[float, float]:
    """(TV of the weighted mode occupancy, |weighted mean - exact mean|), averaged over groups."""
    W = res.weights if weighted else torch.full_like(res.weights, 1.0 / res.weights.shape[-1])
    resp = exact.responsibilities(res.samples.reshape(-1, 2)).reshape(*W.shape, -1)
    occupancy = (W[..., None] * resp).sum(1).mean(0)
    mean = (W[..., None] * res.samples).sum(1).mean(0)
    tv = 0.5 * (occupancy - exact.weights).abs().sum().item()
    return tv, (mean - exact.mean).norm().item()


class ReferenceBugParticles(DiffusionParticles):
    """Resampling as the reference implementation does it: gradient and look-ahead stay put."""

    def __getitem__(self, ancestors: Tensor) -> DiffusionParticles:
        moved = super().__getitem__(ancestors)
        return moved.replace(lookahead=self.lookahead, grad=self.grad)
