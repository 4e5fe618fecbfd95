"""``guidance="tweedie"``: the denoiser-Jacobian-free guided proposal.

1. its shift direction is `sqrt(ā) ∇_{x̂0} r(D(x̂0))` (finite differences), zero on clipped
   coordinates, and it never builds a graph through the denoiser;
2. for a Gaussian prior `N(m, I)` Tweedie's Jacobian is exact (`∂x̂0/∂x_t = sqrt(ā) I`), so a
   whole ``tweedie`` run equals the full ``gradient`` run;
3. chunking and gradient checkpointing change nothing.
(Exactness on tilted mixtures: ``test_das_exactness``.)
"""
from __future__ import annotations

import math

import pytest
import torch
from das_cases import three_mode_prior

from optimizer.das import build_sampler, sample
from optimizer.das.config import DASOptions
from optimizer.das.guidance import tweedie_jacobian
from optimizer.priors.gaussian_mixture import GaussianMixturePrior


def _reward(x):
    return -((x - 1.0) ** 2).sum(-1) + torch.sin(3 * x[:, 0])


def _target(prior, guidance="tweedie", **kw):
    sampler, _ = build_sampler(prior, _reward, num_particles=8, alpha=0.7, num_steps=10,
                               conditions=[0, 1], guidance=guidance,
                               generator=torch.Generator(device=prior.device).manual_seed(0),
                               **kw)
    return sampler.target


def _fd_grad(f, x, h=1e-6):
    """Central differences of `f: B x d -> B` per coordinate, `B x d`."""
    cols = []
    for j in range(x.shape[1]):
        e = torch.zeros_like(x)
        e[:, j] = h
        cols.append((f(x + e) - f(x - e)) / (2 * h))
    return torch.stack(cols, dim=1)


def test_jacobian_interpolates_between_unit_prior_and_fixed_noise():
    assert tweedie_jacobian(0.25) == 0.5  # s² = 1: sqrt(ā)
    assert tweedie_jacobian(0.25, math.inf) == 2.0  # ε̂ held fixed: 1 / sqrt(ā)
    assert math.isclose(tweedie_jacobian(0.25, 4.0), 0.5 * 4.0 / (0.25 * 4.0 + 0.75))


@pytest.mark.parametrize("k", [0, 4, 9])
def test_direction_is_the_reward_gradient_at_x0_hat_times_sqrt_alpha_bar(device, k):
    t = _target(three_mode_prior(device, torch.float64))
    x = torch.randn(2, 8, 2, dtype=torch.float64, device=device)
    ev = t.evaluate(x, k)
    free = _target(three_mode_prior(device, torch.float64), "none").evaluate(x, k)
    # ε̂, x̂0 and the look-ahead reward are exactly those of the gradient-free sampler
    for name in ("eps", "x0_hat", "reward"):
        torch.testing.assert_close(getattr(ev, name), getattr(free, name), rtol=0, atol=0)
    a = t.schedule.alpha_bar[k]
    x0 = ev.x0_hat.reshape(16, 2)
    expected = math.sqrt(a) * _fd_grad(_reward, x0)
    torch.testing.assert_close(ev.grad.reshape(16, 2), expected, rtol=1e-6, atol=1e-8)


def test_clipped_coordinates_get_no_gradient(device):
    t = _target(three_mode_prior(device, torch.float64), clip_sample=1.5)
    x = 3 * torch.randn(2, 8, 2, dtype=torch.float64, device=device)
    k = 5
    ev = t.evaluate(x, k)
    clipped = ev.x0_hat.abs() == 1.5
    assert clipped.any() and (~clipped).any()
    assert torch.all(ev.grad[clipped] == 0)
    expected = math.sqrt(t.schedule.alpha_bar[k]) * _fd_grad(_reward, ev.x0_hat.reshape(16, 2))
    torch.testing.assert_close(ev.grad[~clipped], expected.reshape(2, 8, 2)[~clipped])


class _Recording(GaussianMixturePrior):
    """A real mixture prior that records whether ``predict_noise`` ran under autograd."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.graph: list[bool] = []

    def predict_noise(self, x, t, context=None):
        out = super().predict_noise(x, t, context)
        self.graph.append(out.requires_grad)
        return out


@pytest.mark.parametrize(("guidance", "through_denoiser"), [("tweedie", False),
                                                            ("gradient", True)])
def test_tweedie_never_backpropagates_through_the_denoiser(device, guidance, through_denoiser):
    gm = three_mode_prior(device)
    prior = _Recording(gm.means, gm.covariances, gm.weights)
    res = sample(prior, _reward, num_particles=8, alpha=0.7, num_steps=6, guidance=guidance,
                 generator=torch.Generator(device=device).manual_seed(0))
    assert len(prior.graph) == 6 and set(prior.graph) == {through_denoiser}
    assert torch.isfinite(res.log_weights).all()


def _unit_gaussian(device):
    """`N(m, I)` in d = 2: its exact denoiser has `∂x̂0/∂x_t = sqrt(ā) I`."""
    return GaussianMixturePrior(torch.tensor([[0.5, -1.0]], dtype=torch.float64, device=device),
                                torch.eye(2, dtype=torch.float64, device=device)[None],
                                torch.ones(1, dtype=torch.float64, device=device))


def test_tweedie_equals_full_gradient_guidance_for_a_unit_gaussian_prior(device):
    prior = _unit_gaussian(device)
    x = torch.randn(2, 8, 2, dtype=torch.float64, device=device)
    for k in (0, 5, 9):
        full = _target(prior, "gradient").evaluate(x, k).grad
        torch.testing.assert_close(_target(prior).evaluate(x, k).grad, full)

    def run(guidance):
        return sample(prior, _reward, num_particles=32, alpha=0.3, num_steps=20,
                      conditions=[0, 1], guidance=guidance, ess_threshold=0.8,
                      generator=torch.Generator(device=device).manual_seed(1))

    a, b = run("tweedie"), run("gradient")
    assert a.resampled.any()
    assert torch.equal(a.ancestors, b.ancestors)
    for name in ("samples", "log_weights", "ess", "lambdas", "log_normalizer"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), msg=name)


def test_chunking_and_checkpointing_change_nothing(device):
    gm = three_mode_prior(device, torch.float64)

    def run(**kw):
        return sample(gm, _reward, num_particles=24, alpha=0.5, num_steps=15,
                      ess_threshold=0.8, conditions=[0, 1], guidance="tweedie",
                      generator=torch.Generator(device=device).manual_seed(3), **kw)

    full = run()
    assert full.resampled.any()
    for other in (run(chunk_size=7), run(chunk_size=16, gradient_checkpointing=True)):
        assert torch.equal(other.ancestors, full.ancestors)
        for name in ("samples", "log_weights", "ess", "lambdas", "log_normalizer"):
            torch.testing.assert_close(getattr(other, name), getattr(full, name),
                                       rtol=1e-10, atol=1e-10, msg=name)


def test_tweedie_is_a_guidance_option():
    assert DASOptions(guidance="tweedie").guidance == "tweedie"
