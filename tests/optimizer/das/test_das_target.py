"""The tilted target's pieces: proposal ratio, gradient, potentials, final step."""
from __future__ import annotations

import math

import torch
from das_cases import three_mode_prior

from optimizer.das import build_sampler
from optimizer.das.schedule import gaussian_log_prob
from optimizer.smc.sampler import log_potential


def _reward(x):
    return -((x - 1.0) ** 2).sum(-1)


def _sampler(device, guidance="gradient", steps=10):
    gm = three_mode_prior(device, torch.float64)
    sampler, _ = build_sampler(gm, _reward, num_particles=8, alpha=0.7, num_steps=steps,
                               conditions=[0, 1], guidance=guidance,
                               generator=torch.Generator(device=device).manual_seed(0))
    return gm, sampler


def test_guided_log_ratio_equals_difference_of_gaussian_densities(device):
    _, sampler = _sampler(device)
    t = sampler.target
    particles = sampler.init().particles
    lam_next = torch.tensor([0.3, 0.8], dtype=torch.float64, device=device)
    k = 2
    g = torch.Generator(device=device).manual_seed(5)
    prop = t.propose(particles, k, lam_next, g)
    x_next, log_ratio = prop.x, prop.log_ratio
    sigma = t.schedule.sigmas[k]
    mean_p = t.schedule.transition_mean(k, particles.x0_hat, particles.eps)
    mean_q = mean_p + sigma**2 * lam_next[:, None, None] * particles.grad / t.alpha
    expected = (gaussian_log_prob(x_next, mean_p, sigma, 1)
                - gaussian_log_prob(x_next, mean_q, sigma, 1))
    torch.testing.assert_close(log_ratio, expected, rtol=1e-9, atol=1e-9)
    # the draw itself is N(mean_q, σ² I): recover its standard normal noise
    z = (x_next - mean_q) / sigma
    torch.testing.assert_close(z, torch.randn(z.shape, generator=torch.Generator(device=device)
                                              .manual_seed(5), dtype=z.dtype, device=device))


def test_gradient_is_that_of_the_reward_of_tweedie_estimate(device):
    gm, sampler = _sampler(device)
    t = sampler.target
    x = torch.randn(2, 8, 2, dtype=torch.float64, device=device)
    k = 4
    ev = t.evaluate(x, k)
    r, grad = ev.reward, ev.grad
    step = t.schedule.timesteps[k]
    a = t.schedule.alpha_bar[k]

    def f(flat):
        eps = gm.predict_noise(flat, step)
        return _reward((flat - math.sqrt(1 - a) * eps) / math.sqrt(a))

    h = 1e-6
    flat = x.reshape(16, 2)
    for j in range(2):
        e = torch.zeros_like(flat)
        e[:, j] = h
        fd = (f(flat + e) - f(flat - e)) / (2 * h)
        torch.testing.assert_close(grad.reshape(16, 2)[:, j], fd, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(r.reshape(16), f(flat))


def test_gradient_free_mode_carries_no_gradient_and_uses_prior_moves(device):
    _, sampler = _sampler(device, "none")
    particles = sampler.init().particles
    assert particles.grad is None
    prop = sampler.target.propose(particles, 1, torch.ones(2, dtype=torch.float64, device=device),
                                         None)
    assert torch.equal(prop.log_ratio, torch.zeros_like(prop.log_ratio))


def test_last_step_is_deterministic_and_uses_the_exact_reward(device):
    _, sampler = _sampler(device, steps=3)
    t = sampler.target
    state = sampler.init()
    for _ in range(2):
        state = sampler.step(state).state
    before, lam = state.particles, state.lam
    out = sampler.step(state)
    after, lam_last = out.state.particles, out.state.lam
    assert out.state.k == 3 and not out.record.resampled.any()
    torch.testing.assert_close(after.x, before.x0_hat)  # σ = 0: x_0 = x̂0
    torch.testing.assert_close(after.design, after.x)  # the identity decoder's D(x_0)
    torch.testing.assert_close(after.lookahead, _reward(after.x.reshape(-1, 2)).reshape(2, 8))
    assert torch.all(lam_last == 1)
    expected = before.log_w + (1.0 * after.lookahead - lam[:, None] * before.lookahead) / t.alpha
    torch.testing.assert_close(after.log_w, expected)


def test_log_potential_is_zero_at_lambda_zero_even_for_infinite_rewards(device):
    r = torch.tensor([[-math.inf, 1.0], [2.0, 3.0]], dtype=torch.float64, device=device)
    pot = log_potential(r, torch.tensor([0.0, 0.5], dtype=torch.float64, device=device), 0.7)
    assert pot[0].tolist() == [0.0, 0.0] and pot[1].tolist() == [0.5 * 2.0 / 0.7, 0.5 * 3.0 / 0.7]


def test_guided_log_ratio_of_half_precision_particles_is_computed_in_float32(device):
    """`|g|²` of float16 particles overflows float16 (max 65504) for large early gradients;
    the ratio must still be the float64 value (weights are at least float32)."""
    _, sampler = _sampler(device)
    t = sampler.target
    particles = sampler.init().particles
    big = torch.full_like(particles.grad, 300.0)  # |g|² = 1.8e5 per particle
    half = particles.replace(x=particles.x.half(), x0_hat=particles.x0_hat.half(),
                             eps=particles.eps.half(), grad=big.half())
    lam_next = torch.tensor([0.3, 0.8], dtype=torch.float64, device=device)
    k = 2
    log_ratio = t.propose(half, k, lam_next,
                          torch.Generator(device=device).manual_seed(5)).log_ratio
    z = torch.randn(half.x.shape, generator=torch.Generator(device=device).manual_seed(5),
                    dtype=torch.float16, device=device).double()
    sigma, lam = t.schedule.sigmas[k], lam_next[:, None]
    expected = (-(sigma / t.alpha) * lam * (z * 300.0).sum(-1)
                - 0.5 * (sigma / t.alpha) ** 2 * lam**2 * 2 * 300.0**2)
    assert log_ratio.dtype == torch.float64 and torch.isfinite(log_ratio).all()
    torch.testing.assert_close(log_ratio, expected, rtol=1e-3, atol=1e-3)


def test_tilted_target_is_a_feynman_kac_model_run_by_the_generic_smc(device):
    from optimizer.smc import FeynmanKacModel, TemperedSMC

    _, sampler = _sampler(device)
    assert isinstance(sampler.target, FeynmanKacModel) and isinstance(sampler, TemperedSMC)
    assert sampler.target is sampler.model
