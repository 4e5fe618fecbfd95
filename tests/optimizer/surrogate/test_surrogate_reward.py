"""The SMC reward r̂ = g(s μ + β σ): values, directions, scalarizations, gradients through φ."""
from __future__ import annotations

import pytest
import torch
from surrogate_dummies import get_dummy_surrogate, make_embedding_net

from optimizer.errors import ConfigError
from optimizer.surrogate import CallableFeatures, EmbeddingFeatures, PCAFeatures

F64 = torch.float64


@pytest.fixture(scope="module")
def sur():
    return get_dummy_surrogate()


@pytest.fixture(scope="module")
def sur2():
    return get_dummy_surrogate(n=10, num_objectives=2)


@pytest.mark.parametrize("beta", [0.0, 2.0])
def test_reward_is_mean_plus_beta_std(sur, beta):
    X = torch.rand(7, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    mean, std = sur.posterior_mean_std(X)
    r = sur.reward(beta=beta)
    assert r.differentiable is True
    out = r(X)
    assert out.shape == (7,)
    assert torch.allclose(out, (mean + beta * std).squeeze(-1), atol=1e-9)


def test_minimizing_flips_the_mean_not_the_bonus(sur):
    X = torch.rand(5, 2, generator=torch.Generator().manual_seed(2), dtype=F64)
    mean, std = sur.posterior_mean_std(X)
    out = sur.reward(beta=1.5, maximize=False)(X)
    assert torch.allclose(out, (-mean + 1.5 * std).squeeze(-1), atol=1e-9)


def test_reward_keeps_the_callers_dtype(sur):
    out = sur.reward()(torch.rand(3, 2, dtype=torch.float32))
    assert out.dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_designs_get_float32_rewards(sur, dtype):
    """`r̂ / α` is exponentiated by the sampler: it must not be rounded to half precision."""
    X = torch.rand(9, 2, generator=torch.Generator().manual_seed(4)).to(dtype)
    out = sur.reward()(X)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, sur.reward()(X.double()).float(), rtol=1e-6, atol=1e-6)


def test_weighted_sum_and_chebyshev_for_two_objectives(sur2):
    sur = sur2
    X = torch.rand(6, 2, generator=torch.Generator().manual_seed(3), dtype=F64)
    mean, std = sur.posterior_mean_std(X)
    beta, w = 1.0, (0.25, 0.75)
    signs = torch.tensor([1.0, -1.0], dtype=F64)
    v = signs * mean + beta * std
    ws = sur.reward(beta=beta, weights=w, maximize=(True, False))(X)
    assert torch.allclose(ws, (v * torch.tensor(w, dtype=F64)).sum(-1), atol=1e-9)
    # Chebyshev: signed outcomes scaled to [0, 1] by the training range
    V = sur.train_Y * signs
    lo, hi = V.min(0).values, V.max(0).values
    u = (v - lo) / (hi - lo) * torch.tensor(w, dtype=F64)
    ch = sur.reward(beta=beta, weights=w, maximize=(True, False), scalarization="chebyshev")(X)
    assert torch.allclose(ch, u.min(-1).values + 0.05 * u.sum(-1), atol=1e-9)


def test_scalarization_options_are_checked(sur2):
    sur = sur2
    with pytest.raises(ConfigError, match="weights=\\(1.0,\\) has 1 entries but Y has 2"):
        sur.reward(weights=(1.0,))
    with pytest.raises(ConfigError, match="scalarization='pareto' is not a known choice"):
        sur.reward(scalarization="pareto")


def test_gradient_matches_finite_differences_through_pca():
    g = torch.Generator().manual_seed(0)
    prior = torch.randn(100, 2, 3, generator=g, dtype=F64)
    fm = PCAFeatures.fit(prior, k=2)
    X = torch.randn(10, 2, 3, generator=g, dtype=F64)
    Y = (fm(X) ** 2).sum(-1, keepdim=True).neg()
    from optimizer.surrogate import Surrogate, SurrogateConfig

    sur = Surrogate.fit(X, Y, feature_map=fm, config=SurrogateConfig(fit_maxiter=40))
    r = sur.reward(beta=2.0)
    x = torch.randn(3, 2, 3, generator=g, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(r, (x,), eps=1e-6, atol=1e-5, rtol=1e-4)
    r(x).sum().backward()
    assert x.grad.abs().sum() > 0


def test_gradient_matches_finite_differences_through_an_embedding():
    fm = EmbeddingFeatures(make_embedding_net(), reference="surrogate_dummies:make_embedding_net")
    g = torch.Generator().manual_seed(4)
    X = torch.rand(9, 4, generator=g, dtype=F64)
    from optimizer.surrogate import Surrogate, SurrogateConfig

    emb = Surrogate.fit(X, X[:, :1].sin(), feature_map=fm, config=SurrogateConfig(fit_maxiter=40))
    x = torch.rand(2, 4, generator=g, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(emb.reward(beta=1.0), (x,), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_non_differentiable_features_make_a_gradient_free_reward():
    fm = CallableFeatures(lambda x: x.round(decimals=1), differentiable=False, reference="r")
    sur = get_dummy_surrogate(feature_map=fm)
    r = sur.reward()
    assert getattr(r, "differentiable", True) is False
    assert r(torch.rand(4, 2, dtype=F64)).shape == (4,)
