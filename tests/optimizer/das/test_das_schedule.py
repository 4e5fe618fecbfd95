"""Timestep subsequences and the DDIM η=1 transition, checked against diffusers' scheduler."""
from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDIMScheduler

from optimizer.das.schedule import DDIMSchedule, ScheduleConfig, gaussian_log_prob
from optimizer.errors import ConfigError
from optimizer.priors.gaussian_mixture import make_alphas_cumprod


@pytest.mark.parametrize("spacing", ["linspace", "leading", "trailing"])
@pytest.mark.parametrize("K", [1, 7, 50, 1000])
def test_timesteps_are_a_decreasing_subsequence(spacing, K):
    s = DDIMSchedule(make_alphas_cumprod(1000), ScheduleConfig(num_steps=K,
                                                               timestep_spacing=spacing))
    ts = s.timesteps
    assert len(ts) == K and all(0 <= t < 1000 for t in ts)
    assert all(a > b for a, b in zip(ts, ts[1:]))
    assert s.sigmas[-1] == 0.0 and s.alpha_bar_next[-1] == 1.0
    assert all(sig > 0 for sig in s.sigmas[:-1])


def test_timesteps_match_diffusers_spacing():
    ac = make_alphas_cumprod(1000)
    for spacing in ["linspace", "leading", "trailing"]:
        ref = DDIMScheduler(num_train_timesteps=1000, timestep_spacing=spacing)
        ref.set_timesteps(20)
        ours = DDIMSchedule(ac, ScheduleConfig(num_steps=20, timestep_spacing=spacing))
        assert ours.timesteps == ref.timesteps.tolist(), spacing


def test_transition_matches_diffusers_ddim_eta_one(device):
    """Our `μ + σ z` (on the test device) equals diffusers' DDIM step (on the CPU) with η = 1
    and the same noise."""
    K = 10
    ref = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear",
                        timestep_spacing="leading", set_alpha_to_one=True,
                        clip_sample=False)
    ref.set_timesteps(K)
    ours = DDIMSchedule(ref.alphas_cumprod.double(), ScheduleConfig(num_steps=K,
                                                                    timestep_spacing="leading"))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 8, 8, generator=g, dtype=torch.float64)
    for k, t in enumerate(ours.timesteps):
        eps = torch.randn(x.shape, generator=g, dtype=torch.float64)
        z = torch.randn(x.shape, generator=g, dtype=torch.float64)
        expected = ref.step(eps, t, x, eta=1.0, variance_noise=z).prev_sample
        a = ours.alpha_bar[k]
        x0 = (x - math.sqrt(1 - a) * eps) / math.sqrt(a)
        got = ours.transition_mean(k, x0.to(device), eps.to(device)) + ours.sigmas[k] * z.to(device)
        torch.testing.assert_close(got.cpu(), expected, rtol=1e-6, atol=1e-6)


def test_gaussian_log_prob_matches_torch(device):
    x, mean = torch.randn(5, 2, 3, device=device), torch.randn(5, 2, 3, device=device)
    ref = torch.distributions.Normal(mean, 0.7).log_prob(x).sum((-1, -2))
    torch.testing.assert_close(gaussian_log_prob(x, mean, 0.7, event_dims=2), ref)


def test_too_many_steps_is_a_clear_error():
    with pytest.raises(ConfigError, match="num_steps=2000 exceeds the prior's 1000 training"):
        DDIMSchedule(make_alphas_cumprod(1000), ScheduleConfig(num_steps=2000))
