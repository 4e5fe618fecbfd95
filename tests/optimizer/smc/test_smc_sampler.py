"""The SMC algorithm is generic: it runs a non-diffusion Feynman–Kac model exactly.

Toy model: a stationary Gaussian AR(1) chain `x_{k+1} = ρ x_k + sqrt(1-ρ²) z`, `x_0 ~ N(0, 1)`,
tilted by `r(x) = b x` at temperature `α`. With `λ_0 = 0` and `λ_K = 1` the weights telescope
to `exp(b x_K / α)`, so the target's marginal of `x_K` is `N(b/α, 1)` and
`log Z = log E[exp(b x / α)] = b² / (2α²)`. The guided variant moves with
`Q = N(ρ x + (1-ρ²) λ_{k+1} b/α, 1-ρ²)` and returns `log M - log Q`, which the weights must
undo exactly.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor

from optimizer.smc import (
    FeynmanKacModel,
    Move,
    NonFiniteRewardError,
    Particles,
    PolynomialTempering,
    TemperedSMC,
    get_resampler,
)


@dataclass(frozen=True)
class Walkers(Particles):
    x: Tensor  # `G x P` positions
    start: Tensor  # `G x P` initial position of the particle's lineage


class AR1Model:
    """A reward-tilted AR(1) chain (``FeynmanKacModel[Walkers]``)."""

    def __init__(self, G, P, K, device, *, rho=0.8, b=1.0, alpha=1.0, guided=False,
                 nan_after=None):
        self.num_groups, self.num_particles, self.num_steps = G, P, K
        self.alpha, self.device, self.weight_dtype = alpha, torch.device(device), torch.float64
        self.rho, self.b, self.guided, self.nan_after = rho, b, guided, nan_after

    def initial(self, generator, *, log_w, origin):
        x = torch.randn(self.num_groups, self.num_particles, generator=generator,
                        device=self.device, dtype=torch.float64)
        return Walkers(log_w=log_w, origin=origin, x=x, start=x.clone())

    def move(self, particles, k, lam_next, generator):
        var = 1.0 - self.rho**2
        mean_m = self.rho * particles.x
        shift = var * lam_next[:, None] * self.b / self.alpha if self.guided else 0.0
        z = torch.randn(particles.x.shape, generator=generator, device=self.device,
                        dtype=torch.float64)
        x = mean_m + shift + math.sqrt(var) * z
        log_ratio = (-0.5 * (x - mean_m) ** 2 / var + 0.5 * (x - mean_m - shift) ** 2 / var)
        return Move(particles=particles.replace(x=x), log_ratio=log_ratio)

    def reward(self, particles):
        r = self.b * particles.x
        if self.nan_after is not None:
            r = torch.where(particles.x > self.nan_after, torch.full_like(r, math.nan), r)
        return r


def _sampler(model, seed=0, threshold=0.5):
    return TemperedSMC(model, tempering=PolynomialTempering(power=2.0),
                       resampler=get_resampler("systematic"), ess_threshold=threshold,
                       generator=torch.Generator(device=model.device).manual_seed(seed))


def test_toy_model_satisfies_the_protocol(device):
    assert isinstance(AR1Model(1, 4, 3, device), FeynmanKacModel)


@pytest.mark.parametrize("guided", [False, True])
def test_tilted_ar1_chain_is_sampled_exactly(device, guided):
    b, alpha = 1.5, 1.0
    model = AR1Model(8, 1024, 10, device, b=b, alpha=alpha, guided=guided)
    res = _sampler(model, threshold=0.9).run()
    W = torch.softmax(res.particles.log_w, dim=-1)
    mean = (W * res.particles.x).sum(-1).mean().item()
    second = (W * res.particles.x**2).sum(-1).mean().item()
    # measured over seeds 0-4: |mean error| <= 0.05, |var error| <= 0.06, |log Z error| <= 0.03
    assert mean == pytest.approx(b / alpha, abs=0.08)  # N(b/α, 1)
    assert second - mean**2 == pytest.approx(1.0, abs=0.15)
    log_z = (torch.logsumexp(res.log_z, 0) - math.log(8)).item()
    assert log_z == pytest.approx(b**2 / (2 * alpha**2), abs=0.08)
    assert not res.history.resampled[-1].any(), "the returned set is weighted, not resampled"
    assert res.history.resampled.any() or guided  # the guided moves keep the ESS high
    assert res.history.lambdas[-1].eq(1).all()


def test_every_carried_field_follows_its_lineage(device):
    res = _sampler(AR1Model(2, 64, 8, device), threshold=1.0).run()
    first = res.particles.start
    assert not torch.equal(res.particles.origin, torch.arange(64, device=device).expand(2, 64))
    # `start` was permuted with the particles: every copy of one origin has the same start
    for g in range(2):
        for o in res.particles.origin[g].unique():
            assert first[g][res.particles.origin[g] == o].unique().numel() == 1


def test_step_by_step_equals_run_and_results_are_frozen(device):
    model = AR1Model(2, 32, 5, device)
    whole = _sampler(model, seed=3).run()
    sampler = _sampler(model, seed=3)
    state = sampler.init()
    for k in range(5):
        out = sampler.step(state)
        assert out.state.k == k + 1
        state = out.state
    assert torch.equal(state.particles.x, whole.particles.x)
    assert torch.equal(state.particles.log_w, whole.particles.log_w)
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.k = 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.record.ess = None


def test_non_finite_rewards_raise_after_the_loop_naming_step_and_group(device):
    with pytest.raises(NonFiniteRewardError, match=r"step \d+ .*group \d") as exc:
        _sampler(AR1Model(2, 64, 6, device, nan_after=2.5)).run()
    assert exc.value.step >= 0 and exc.value.group in (0, 1)
