"""The reward's posterior from cached solves in chunks equals BoTorch's joint posterior (values and
gradients, through ``Normalize`` and ``Standardize``) and never builds a `B x B` block."""
from __future__ import annotations

import pytest
import torch

from optimizer.surrogate import CallableFeatures, IdentityFeatures, Surrogate, SurrogateConfig
from optimizer.surrogate import predictive

F64 = torch.float64


def _fit(*, n: int, m: int, with_yvar: bool, feature_map=None, seed: int = 0) -> Surrogate:
    """Data far from the unit cube and far from standardized, so both transforms matter."""
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 3, generator=g, dtype=F64) * 80 - 30
    u = X / 40
    cols = [1e3 * torch.sin(2 * u).sum(-1, keepdim=True) + 5e3,
            -(u ** 2).sum(-1, keepdim=True) * 0.01][:m]
    Y = torch.cat(cols, dim=1)
    Y = Y + 0.02 * Y.std(0) * torch.randn(n, m, generator=g, dtype=F64)
    Yvar = (0.02 * Y.std(0)) ** 2 * torch.ones_like(Y) if with_yvar else None
    return Surrogate.fit(X, Y, Yvar, feature_map=feature_map or IdentityFeatures(),
                         config=SurrogateConfig(fit_maxiter=60))


def _points(b: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, generator=g, dtype=F64) * 100 - 40  # partly outside the data


CASES = [dict(m=1, with_yvar=False), dict(m=1, with_yvar=True), dict(m=2, with_yvar=True),
         dict(m=2, with_yvar=False)]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"m{c['m']}-yvar{c['with_yvar']}")
def test_marginals_equal_botorch_posterior(case):
    sur = _fit(n=40, **case)
    Z = sur.features(_points(300, 1))
    ref_mean, ref_var = sur.mean_var_features(Z)
    mean, var = sur.marginal_mean_var(Z)
    assert mean.shape == ref_mean.shape == (300, case["m"]) and var.shape == ref_var.shape
    torch.testing.assert_close(mean, ref_mean, rtol=1e-8, atol=0)
    torch.testing.assert_close(var, ref_var, rtol=1e-8, atol=0)
    # at the training points the variance is small: still the same, relative to the prior's
    mean_t, var_t = sur.marginal_mean_var(sur.train_Z)
    ref_mean_t, ref_var_t = sur.mean_var_features(sur.train_Z)
    torch.testing.assert_close(mean_t, ref_mean_t, rtol=1e-8, atol=0)
    torch.testing.assert_close(var_t, ref_var_t, rtol=0, atol=1e-8 * float(ref_var.detach().max()))


@pytest.mark.parametrize("kind,weights", [("weighted_sum", (0.3, 0.7)), ("chebyshev", None)])
@pytest.mark.parametrize("beta", [0.0, 2.0])
def test_reward_and_gradient_equal_botorch_reward(kind, weights, beta):
    sur = _fit(n=30, m=2, with_yvar=True)
    X = _points(64, 2)
    out = {}
    for method in ("cached", "botorch"):
        Xg = X.clone().requires_grad_(True)
        r = sur.reward(beta=beta, scalarization=kind, weights=weights, method=method)
        val = r(Xg)
        (grad,) = torch.autograd.grad(val.sum(), Xg)
        out[method] = (val.detach(), grad)
    torch.testing.assert_close(out["cached"][0], out["botorch"][0], rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(out["cached"][1], out["botorch"][1], rtol=1e-7, atol=1e-9)
    assert out["cached"][1].abs().sum() > 0


def test_gradient_flows_through_a_differentiable_feature_map():
    fm = CallableFeatures(lambda X: torch.cat([X, X[:, :1] * X[:, 1:2] / 30], dim=1),
                          differentiable=True)
    sur = _fit(n=30, m=1, with_yvar=False, feature_map=fm)
    X = _points(32, 3).requires_grad_(True)
    (g_new,) = torch.autograd.grad(sur.reward(beta=1.0)(X).sum(), X)
    (g_ref,) = torch.autograd.grad(sur.reward(beta=1.0, method="botorch")(X).sum(), X)
    torch.testing.assert_close(g_new, g_ref, rtol=1e-7, atol=1e-9)


def test_chunks_bound_every_block_and_agree(monkeypatch):
    """With 16-row chunks, no tensor the reward builds (all kept for its backward pass) holds
    more than a chunk's cross-covariance with the training data: nothing grows as `B²`."""
    sur = _fit(n=40, m=1, with_yvar=True)
    n, B = 40, 2048
    monkeypatch.setattr(predictive, "BLOCK_ELEMENTS", 16 * n)
    sur._predictive = None  # rebuilt with the small block
    X = _points(B, 4)
    ref = sur.reward(beta=2.0, method="botorch")(X)
    sizes: list[int] = []

    def keep(t: torch.Tensor) -> torch.Tensor:
        sizes.append(t.numel())
        return t

    Xg = X.clone().requires_grad_(True)
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        val = sur.reward(beta=2.0)(Xg)
    big = [s for s in sizes if s > max(16 * n * 3, B)]  # c x n x k distances at most
    assert sizes and not big, f"tensors larger than a chunk's block: {big[:5]}"
    assert sur._predictive is not None and sur._predictive[0].chunk_rows == 16
    torch.testing.assert_close(val.detach(), ref, rtol=1e-8, atol=1e-10)
    val.sum().backward()
    assert torch.isfinite(Xg.grad).all()


def test_invalid_method_is_named():
    sur = _fit(n=10, m=1, with_yvar=False)
    with pytest.raises(ValueError, match="method='joint'"):
        sur.reward(method="joint")
