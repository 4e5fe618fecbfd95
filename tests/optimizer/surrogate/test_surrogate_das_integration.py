"""The surrogate's reward drives the real DAS sampler, whose particles are then pre-screened."""
from __future__ import annotations

import pytest
import torch

from optimizer.das import sample
from optimizer.priors.registry import gmm_toy_prior
from optimizer.surrogate import CallableFeatures, Surrogate, SurrogateConfig, screen

F64 = torch.float64


def _oracle(X: torch.Tensor) -> torch.Tensor:
    """Black box: prefers the mixture mode at (4, 4)."""
    return -((X - 4.0) ** 2).sum(-1, keepdim=True) / 10.0


def _round0_surrogate(feature_map=None) -> Surrogate:
    g = torch.Generator().manual_seed(0)
    # round 0: designs from the prior's modes, like a plain-prior first round
    X = torch.cartesian_prod(*(torch.tensor([-4.0, 0.0, 4.0], dtype=F64),) * 2)
    X = X.repeat(3, 1) + 0.5 * torch.randn(27, 2, generator=g, dtype=F64)
    Y = _oracle(X) + 0.01 * torch.randn(27, 1, generator=g, dtype=F64)
    return Surrogate.fit(X, Y, feature_map=feature_map, config=SurrogateConfig(fit_maxiter=40))


@pytest.mark.parametrize("differentiable", [True, False], ids=["guided", "gradient-free"])
def test_surrogate_reward_tilts_das_towards_the_good_mode(differentiable):
    fm = CallableFeatures(lambda x: x, differentiable=differentiable, reference="identity")
    sur = _round0_surrogate(fm)
    r_hat = sur.reward(beta=1.0)
    assert r_hat.differentiable is differentiable
    prior = gmm_toy_prior(dtype=F64)
    res = sample(prior, r_hat, num_particles=64, alpha=0.05, num_steps=25,
                 generator=torch.Generator().manual_seed(1))
    X = res.samples.reshape(-1, 2)
    w = res.log_weights.reshape(-1).exp()
    near_best = ((X - 4.0).norm(dim=1) < 2.0).to(F64)
    # the prior puts 1/9 of its mass on that mode; the tilted target nearly all of it
    assert float((w * near_best).sum()) > 0.8
    picked = screen(sur, X, 4, seed=0)
    assert picked.selected.numel() >= 1
    best_picked = X[picked.selected]
    assert ((best_picked - 4.0).norm(dim=1) < 2.5).all()
