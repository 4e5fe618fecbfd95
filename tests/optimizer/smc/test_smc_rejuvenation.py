"""Resample-move and predictive tempering in the generic SMC algorithm (no diffusion here).

Toy model: the reward-tilted AR(1) chain of ``test_smc_sampler`` (final marginal `N(b/α, 1)`,
`log Z = b²/(2α²)`), plus a rejuvenation move: given its parent, `x_k` has the conditional
`π_k(x_k | x_{k-1}) ∝ N(x_k; ρ x_{k-1}, 1-ρ²) exp(λ_k b x_k / α)`; the move proposes a fresh
child `x' ~ N(ρ x_{k-1}, 1-ρ²)` of the parent (independence Metropolis–Hastings) and accepts
with `min(1, exp(λ_k b (x' - x) / α))`. Resampling after every step (`κ = 1`) runs the move
after every step, so a wrong acceptance (accept all: the untilted conditional) shows up as a
mean shifted by about `Σ_k ρ^{K-k} (1-ρ²) λ_k b/α`, far beyond the tolerance.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
from test_smc_sampler import AR1Model, Walkers
from torch import Tensor

from optimizer.smc import (
    AdaptiveTempering,
    PolynomialTempering,
    PredictiveTempering,
    RejuvenatingModel,
    Rejuvenation,
    SMCConfigError,
    TemperedSMC,
    conditional_ess_fraction,
    get_resampler,
    make_tempering,
)


@dataclass(frozen=True)
class Children(Walkers):
    parent_mean: Tensor  # `G x P` mean `ρ x_{k-1}` of the transition each particle came from


class RejuvenatingAR1(AR1Model):
    """The AR(1) model with an exact independence-MH rejuvenation move."""

    def __init__(self, *args, accept_all=False, **kw):
        super().__init__(*args, **kw)
        self.accept_all = accept_all

    def initial(self, generator, *, log_w, origin):
        p = super().initial(generator, log_w=log_w, origin=origin)
        return Children(log_w=p.log_w, origin=p.origin, x=p.x, start=p.start,
                        parent_mean=torch.zeros_like(p.x))

    def move(self, particles, k, lam_next, generator):
        out = super().move(particles, k, lam_next, generator)
        return type(out)(particles=out.particles.replace(parent_mean=self.rho * particles.x),
                         log_ratio=out.log_ratio)

    def rejuvenate(self, particles, k, lam, mask, generator):
        z = torch.randn(particles.x.shape, generator=generator, device=self.device,
                        dtype=torch.float64)
        x_new = particles.parent_mean + math.sqrt(1.0 - self.rho**2) * z
        log_a = lam[:, None] * self.b * (x_new - particles.x) / self.alpha
        if self.accept_all:
            log_a = torch.zeros_like(log_a)
        u = torch.rand(log_a.shape, generator=generator, device=self.device, dtype=torch.float64)
        accepted = (torch.log(u) < log_a) & mask[:, None]
        return Rejuvenation(particles=particles.replace(x=torch.where(accepted, x_new,
                                                                      particles.x)),
                            accepted=accepted)


def _sampler(model, *, steps=2, tempering=None, threshold=1.0, seed=0):
    return TemperedSMC(model, tempering=tempering or PolynomialTempering(power=2.0),
                       resampler=get_resampler("systematic"), ess_threshold=threshold,
                       generator=torch.Generator(device=model.device).manual_seed(seed),
                       rejuvenation_steps=steps)


def _moments(res):
    W = torch.softmax(res.particles.log_w, dim=-1)
    mean = (W * res.particles.x).sum(-1).mean().item()
    var = (W * res.particles.x**2).sum(-1).mean().item() - mean**2
    return mean, var


@pytest.mark.parametrize("tempering", ["polynomial", "predictive"])
def test_resample_move_samples_the_tilted_chain_exactly(device, tempering):
    b, alpha = 1.5, 1.0
    model = RejuvenatingAR1(8, 1024, 10, device, b=b, alpha=alpha)
    assert isinstance(model, RejuvenatingModel)
    sched = PolynomialTempering(power=2.0) if tempering == "polynomial" else PredictiveTempering()
    res = _sampler(model, tempering=sched).run()
    mean, var = _moments(res)
    assert mean == pytest.approx(b / alpha, abs=0.08)
    assert var == pytest.approx(1.0, abs=0.15)
    log_z = (torch.logsumexp(res.log_z, 0) - math.log(8)).item()
    assert log_z == pytest.approx(b**2 / (2 * alpha**2), abs=0.08)
    rate = res.history.accept_rate
    assert rate.shape == (10, 8) and rate[-1].eq(0).all()
    assert 0.2 < rate[:-1].mean().item() < 0.99
    # lineage untouched by the moves: every particle still descends from a valid founder
    assert res.particles.origin.max() < 1024


def test_a_wrong_acceptance_is_caught(device):
    model = RejuvenatingAR1(8, 1024, 10, device, b=1.5, accept_all=True)
    mean, _ = _moments(_sampler(model).run())
    assert abs(mean - 1.5) > 0.3, mean  # measured ≈ 0.9 (the tilt undone at every step)


def test_moves_run_only_in_resampled_groups(device):
    model = RejuvenatingAR1(2, 64, 6, device)
    sampler = _sampler(model, threshold=0.5)
    state = sampler.init()
    for _ in range(5):
        out = sampler.step(state)
        ran = out.record.accept_rate > 0
        assert not (ran & ~out.record.resampled).any()
        state = out.state
    never = _sampler(model, threshold=0.0).run()  # no resampling: no moves at all
    assert never.history.accept_rate.eq(0).all()


def test_rejuvenation_needs_a_rejuvenating_model(device):
    with pytest.raises(SMCConfigError, match="rejuvenation_steps=1 needs a model with a "
                                             "rejuvenate"):
        _sampler(AR1Model(1, 4, 3, device), steps=1)
    with pytest.raises(SMCConfigError, match="rejuvenation_steps=-1 must be an integer >= 0"):
        _sampler(RejuvenatingAR1(1, 4, 3, device), steps=-1)


# -- predictive tempering ---------------------------------------------------------------------
def test_predictive_hits_the_expected_cess_and_holds_back(device):
    g = torch.Generator(device=device).manual_seed(0)
    r = torch.randn(3, 400, generator=g, device=device, dtype=torch.float64)
    log_w = torch.zeros(3, 400, device=device, dtype=torch.float64)
    cur = torch.tensor([0.1, 0.2, 0.0], device=device, dtype=torch.float64)
    sched = PredictiveTempering(target=0.8, cap=None, floor=None)
    sched.reset()
    scale = torch.tensor([[0.5], [1.0], [2.0]], device=device, dtype=torch.float64)
    sched.observe(1, torch.randn(3, 400, generator=g, device=device, dtype=torch.float64) * scale,
                  log_w)
    v = sched.predicted_variance()
    assert v is not None
    torch.testing.assert_close(v, scale.squeeze(1) ** 2, rtol=0.2, atol=0)  # one observation
    lam = sched.next_lambda(2, 30, cur, r, log_w)
    expected = conditional_ess_fraction(log_w, (lam - cur)[:, None] * r) * torch.exp(-lam**2 * v)
    torch.testing.assert_close(expected, torch.full_like(expected, 0.8), atol=1e-3, rtol=0)
    plain = AdaptiveTempering(target=0.8, cap=None, floor=None).next_lambda(2, 30, cur, r, log_w)
    assert torch.all(lam < plain)
    assert lam[0] > lam[1] > lam[2]  # faster-spreading look-ahead → smaller λ


def test_predictive_extrapolates_growth_and_resets(device):
    sched = PredictiveTempering(growth_max=3.0)
    log_w = torch.zeros(1, 4, device=device)
    base = torch.tensor([[-1.0, 1.0, -1.0, 1.0]], device=device)  # weighted variance 1
    sched.observe(1, base, log_w)
    sched.observe(2, 2 * base, log_w)  # variance 4: growth 4, capped at 3
    assert sched.predicted_variance().item() == pytest.approx(12.0)
    sched.observe(3, base, log_w)  # shrinking: never predicted below the last variance
    assert sched.predicted_variance().item() == pytest.approx(1.0)
    sched.observe(4, torch.full((1, 4), math.nan, device=device), log_w)
    assert torch.isfinite(sched.predicted_variance()).all()
    sched.reset()
    assert sched.predicted_variance() is None


def test_the_sampler_feeds_and_resets_the_predictive_schedule(device):
    sched = PredictiveTempering()
    sampler = _sampler(RejuvenatingAR1(2, 64, 5, device), tempering=sched, steps=1)
    sampler.run()
    assert sched.predicted_variance() is not None
    sampler.init()
    assert sched.predicted_variance() is None


def test_predictive_names_and_errors():
    assert isinstance(make_tempering("predictive"), PredictiveTempering)
    with pytest.raises(SMCConfigError, match="growth_max=0.5 must be >= 1"):
        PredictiveTempering(growth_max=0.5)
    with pytest.raises(SMCConfigError, match="adaptive, exponential, polynomial, predictive"):
        make_tempering("linear")
