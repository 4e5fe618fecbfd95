"""``clip_sample``: DAS on a schedule whose first `ā` vanishes (``squaredcos_cap_v2``).

With the cosine schedule `ā_{T-1} ≈ 1e-9`, so Tweedie's `x̂0 = (x - sqrt(1-ā) ε̂)/sqrt(ā)` at the
first step multiplies the network's error by `1/sqrt(ā) ≈ 3e4`. An exact prior survives it; a
slightly miscalibrated, saturating network (every trained one) sends the particles to ~1e4.
Clipping `x̂0` to the design range (diffusers' ``clip_sample``, with `ε̂` re-derived so the pair
stays consistent) keeps the sampler in range and, where the clip does not change the prior,
exact.
"""
from __future__ import annotations

import math

import pytest
import torch
from das_cases import three_mode_prior

from optimizer.das import sample
from optimizer.das.api import build_sampler
from optimizer.errors import ConfigError
from optimizer.priors.gaussian_mixture import GaussianMixturePrior

G, P, K = 4, 512, 100
CLIP = 6.0  # the three modes lie within |x| <= 3 (+ a few std)
B = torch.tensor([1.0, 0.5])


def linear(x):
    return x @ B.to(x)


def cosine_prior(device) -> GaussianMixturePrior:
    gm = three_mode_prior(device)
    return GaussianMixturePrior(gm.means, gm.covariances, gm.weights,
                                beta_schedule="squaredcos_cap_v2")


class Saturating:
    """The exact prior's `ε̂` 5% too large and saturating at 4, like an imperfect network."""

    def __init__(self, gm: GaussianMixturePrior) -> None:
        self.gm = gm

    def __getattr__(self, name):
        return getattr(self.gm, name)

    def predict_noise(self, x, t, context=None):
        return 4.0 * torch.tanh(1.05 * self.gm.predict_noise(x, t, context) / 4.0)


def _stats(res, exact):
    resp = exact.responsibilities(res.samples.reshape(-1, 2)).reshape(G, P, -1)
    occupancy = (res.weights[..., None] * resp).sum(1).mean(0)
    mean = (res.weights[..., None] * res.samples).sum(1).mean(0)
    return 0.5 * (occupancy - exact.weights).abs().sum().item(), (mean - exact.mean).norm().item()


def _run(prior, guidance, clip):
    return sample(prior, linear, num_particles=P, alpha=1.0, num_steps=K, conditions=[0] * G,
                  guidance=guidance, clip_sample=clip,
                  generator=torch.Generator(device=prior.device).manual_seed(0))


def test_first_cosine_step_has_vanishing_alpha_bar(device):
    assert cosine_prior(device).alphas_cumprod[-1].item() < 1e-8


@pytest.mark.parametrize("guidance", ["gradient", "tweedie", "none"])
def test_clip_keeps_an_imperfect_prior_in_range(device, guidance):
    gm = cosine_prior(device)
    exact = gm.tilt_linear(B.to(device), 1.0).mixture
    exploded = _run(Saturating(gm), guidance, None)
    assert exploded.samples.abs().max().item() > 100.0, "the failure this option exists for"

    res = _run(Saturating(gm), guidance, CLIP)
    assert res.samples.abs().max().item() <= CLIP
    tv, err = _stats(res, exact)  # measured: TV <= 0.01, mean error <= 0.08
    assert tv <= 0.05 and err <= 0.3, (tv, err)


@pytest.mark.parametrize("guidance", ["gradient", "tweedie", "none"])
def test_clip_leaves_an_exact_prior_exact(device, guidance):
    gm = cosine_prior(device)
    tv, err = _stats(_run(gm, guidance, CLIP), gm.tilt_linear(B.to(device), 1.0).mixture)
    assert tv <= 0.05 and err <= 0.3, (tv, err)


def test_clipped_x0_and_eps_stay_consistent(device):
    """`x_t = sqrt(ā) x̂0 + sqrt(1-ā) ε̂` holds after clipping (diffusers' re-derived ε)."""
    sampler, _ = build_sampler(Saturating(cosine_prior(device)), linear, num_particles=64,
                               alpha=1.0, num_steps=K, clip_sample=CLIP, guidance="none",
                               generator=torch.Generator(device=device).manual_seed(0))
    particles = sampler.init().particles
    a = sampler.target.schedule.alpha_bar[0]
    assert particles.x0_hat.abs().max().item() == CLIP, "the first x̂0 must hit the clip"
    rebuilt = math.sqrt(a) * particles.x0_hat + math.sqrt(1.0 - a) * particles.eps
    torch.testing.assert_close(rebuilt, particles.x, rtol=0, atol=1e-5)


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_clip_sample_must_be_positive(device, bad):
    with pytest.raises(ConfigError, match=r"clip_sample=.*greater than 0.*x̂0 range"):
        _run(cosine_prior(device), "none", bad)
