"""The Gaussian-mixture prior: exact ε, closed-form tilts, exact sampling, input checks."""
from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from optimizer.errors import PriorError
from optimizer.priors.base import DiffusionPrior
from optimizer.priors.gaussian_mixture import GaussianMixturePrior, make_alphas_cumprod


def _mixture(d: int, device, dtype=torch.float64) -> GaussianMixturePrior:
    g = torch.Generator().manual_seed(d)
    means = 3 * torch.randn(3, d, generator=g, dtype=dtype)
    a = torch.randn(3, d, d, generator=g, dtype=dtype) * 0.3
    covs = a @ a.transpose(-1, -2) + 0.2 * torch.eye(d, dtype=dtype)
    return GaussianMixturePrior(means.to(device), covs.to(device),
                                torch.tensor([0.5, 0.3, 0.2], dtype=dtype, device=device))


def _reference(gm: GaussianMixturePrior, t: int | None) -> MixtureSameFamily:
    a = 1.0 if t is None else float(gm.alphas_cumprod[t])
    eye = torch.eye(gm.latent_shape[0], dtype=gm.dtype, device=gm.device)
    return MixtureSameFamily(Categorical(probs=gm.weights),
                             MultivariateNormal(math.sqrt(a) * gm.means,
                                                a * gm.covariances + (1 - a) * eye))


def test_implements_the_prior_protocol(device):
    gm = _mixture(2, device)
    assert isinstance(gm, DiffusionPrior)
    assert gm.num_train_timesteps == 1000 and gm.latent_shape == (2,)
    assert gm.prepare_context(None, 8) == (1, None)
    assert gm.prepare_context(["a", "b", "c"], 8) == (3, None)
    x = torch.randn(4, 2, dtype=gm.dtype, device=device)
    assert gm.decode(x) is x


@pytest.mark.parametrize("d", [2, 5])
@pytest.mark.parametrize("t", [0, 250, 999])
def test_noise_prediction_is_the_exact_score(d, t, device):
    """`ε̂ = -sqrt(1 - ā_t) ∇ log p_t` against torch.distributions' mixture log-density."""
    gm = _mixture(d, device)
    x = (3 * torch.randn(16, d, dtype=gm.dtype, device=device)).requires_grad_(True)
    (score,) = torch.autograd.grad(_reference(gm, t).log_prob(x).sum(), x)
    expected = -math.sqrt(1 - float(gm.alphas_cumprod[t])) * score
    torch.testing.assert_close(gm.predict_noise(x.detach(), t), expected, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(gm.marginal_log_prob(x.detach(), t),
                               _reference(gm, t).log_prob(x.detach()))


def test_schedules_match_diffusers():
    from diffusers import DDPMScheduler

    for name in ["linear", "scaled_linear", "squaredcos_cap_v2"]:
        ref = DDPMScheduler(num_train_timesteps=1000, beta_schedule=name).alphas_cumprod
        torch.testing.assert_close(make_alphas_cumprod(1000, name).float(), ref, rtol=1e-5,
                                   atol=1e-7)


def test_exact_sampling_matches_moments(device):
    gm = _mixture(2, device)
    x = gm.sample_exact(200_000, torch.Generator(device=device).manual_seed(0))
    ref = _reference(gm, None)
    torch.testing.assert_close(x.mean(0), ref.mean, atol=0.03, rtol=0)
    w, m, C = gm.weights, gm.means, gm.covariances
    cov = (w[:, None, None] * (C + m[:, :, None] * m[:, None, :])).sum(0) - torch.outer(gm.mean,
                                                                                    gm.mean)
    torch.testing.assert_close(torch.cov(x.T), cov, atol=0.1, rtol=0.02)
    resp = gm.responsibilities(x).mean(0)
    torch.testing.assert_close(resp, gm.weights, atol=5e-3, rtol=0)


def _grid(lim: float, n: int, device, dtype=torch.float64):
    u = torch.linspace(-lim, lim, n, dtype=dtype, device=device)
    X, Y = torch.meshgrid(u, u, indexing="ij")
    pts = torch.stack([X.reshape(-1), Y.reshape(-1)], -1)
    return pts, (u[1] - u[0]) ** 2


def _check_tilt(gm, tilted, log_r, device):
    """Compare a closed-form tilt with quadrature of `p(x) exp(r(x)/α)` on a fine grid."""
    pts, cell = _grid(12.0, 801, device)
    log_p = _reference(gm, None).log_prob(pts) + log_r(pts)
    log_z = torch.logsumexp(log_p, 0) + torch.log(cell)
    torch.testing.assert_close(tilted.log_normalizer, log_z, atol=1e-4, rtol=0)
    W = torch.softmax(log_p, 0)
    torch.testing.assert_close(tilted.mixture.mean, (W[:, None] * pts).sum(0), atol=1e-4, rtol=0)
    occ = (W[:, None] * tilted.mixture.responsibilities(pts)).sum(0)
    torch.testing.assert_close(tilted.mixture.weights, occ, atol=1e-4, rtol=0)


def test_linear_tilt_is_exact(device):
    gm = _mixture(2, device)
    b = torch.tensor([0.7, -0.4], dtype=gm.dtype, device=device)
    alpha = 0.8
    _check_tilt(gm, gm.tilt_linear(b, alpha), lambda x: x @ b / alpha, device)


def test_quadratic_tilt_is_exact(device):
    gm = _mixture(2, device)
    A = torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=gm.dtype, device=device)
    c = torch.tensor([1.0, -2.0], dtype=gm.dtype, device=device)
    alpha = 2.0
    r = lambda x: -0.5 * (((x - c) @ A) * (x - c)).sum(-1) / alpha  # noqa: E731
    tilted = gm.tilt_quadratic(A, c, alpha)
    _check_tilt(gm, tilted, r, device)
    # and the closed-form expected reward under the tilted mixture
    pts, _ = _grid(12.0, 801, device)
    W = torch.softmax(_reference(gm, None).log_prob(pts) + r(pts), 0)
    torch.testing.assert_close(tilted.mixture.expected_quadratic(A, c),
                               (W * r(pts) * alpha).sum(), atol=1e-4, rtol=0)


def test_bad_inputs_name_the_field():
    eye = torch.eye(2).repeat(3, 1, 1)
    with pytest.raises(PriorError, match=r"means has shape \(6,\)"):
        GaussianMixturePrior(torch.zeros(6), eye, torch.ones(3))
    with pytest.raises(PriorError, match=r"covariances has shape \(2, 2\); expected \(3, 2, 2\)"):
        GaussianMixturePrior(torch.zeros(3, 2), torch.eye(2), torch.ones(3))
    with pytest.raises(PriorError, match="weights=.*must be 3 positive numbers"):
        GaussianMixturePrior(torch.zeros(3, 2), eye, torch.tensor([1.0, -1.0, 1.0]))
    with pytest.raises(PriorError, match="not positive definite"):
        GaussianMixturePrior(torch.zeros(3, 2), -eye, torch.ones(3))
    with pytest.raises(PriorError, match="not symmetric"):
        GaussianMixturePrior(torch.zeros(3, 2), eye + torch.tensor([[0.0, 1.0], [0.0, 0.0]]),
                             torch.ones(3))
    with pytest.raises(PriorError, match="beta_schedule='cosine' is unknown"):
        GaussianMixturePrior(torch.zeros(3, 2), eye, torch.ones(3), beta_schedule="cosine")
