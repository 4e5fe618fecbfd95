"""``condition``: a fitted surrogate conditioned on more data with its hyperparameters held gives
the exact GP posterior under those hyperparameters (checked against the closed form computed
here from the hyperparameter values), rebuilds from its state, and differs from a refit."""
from __future__ import annotations

import math

import pytest
import torch

from optimizer.errors import SurrogateError
from optimizer.surrogate.condition import condition
from optimizer.surrogate.config import SurrogateConfig
from optimizer.surrogate.fitting import hyper_state
from optimizer.surrogate.gp import Surrogate
from optimizer.surrogate.state import SurrogateState


def _data(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 3, generator=g, dtype=torch.float64) * 4 - 2
    y = torch.sin(2 * X[:, 0]) + X[:, 1] ** 2 - 0.5 * X[:, 2] + 0.05 * torch.randn(
        n, generator=g, dtype=torch.float64)
    return X, y.unsqueeze(-1)


def _closed_form(base: Surrogate, X: torch.Tensor, y: torch.Tensor, Yvar: torch.Tensor | None,
                 Xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The GP posterior (mean, latent variance) at ``Xs`` given all of ``X, y``, from ``base``'s
    hyperparameter values (RBF lengthscales, mean constant, noise) and input bounds, outcomes
    standardized on ``y`` (mean, unbiased std) as every fit does."""
    gp = base.models[0]
    lo, hi = base.bounds
    ls = gp.covar_module.lengthscale.detach().reshape(-1)
    c = gp.mean_module.constant.detach().reshape(())
    mu, sd = y.mean(), y.std()
    yt = (y.reshape(-1) - mu) / sd

    def k(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a, b = (a - lo) / (hi - lo) / ls, (b - lo) / (hi - lo) / ls
        return torch.exp(-0.5 * torch.cdist(a, b) ** 2)

    if Yvar is None:
        noise = gp.likelihood.noise.detach().reshape(()) * torch.ones(len(X), dtype=X.dtype)
    else:
        noise = Yvar.reshape(-1) / sd ** 2
    K = k(X, X) + torch.diag(noise)
    ks = k(X, Xs)
    L = torch.linalg.cholesky(K)
    alpha = torch.cholesky_solve((yt - c).unsqueeze(-1), L)
    v = torch.linalg.solve_triangular(L, ks, upper=False)
    mean = c + ks.T @ alpha.squeeze(-1)
    var = 1.0 - (v ** 2).sum(0)
    return mean * sd + mu, var * sd ** 2


@pytest.mark.parametrize("noise", ["inferred", "reported"])
def test_condition_is_the_exact_posterior_with_the_hyperparameters_held(noise: str) -> None:
    X, Y = _data(30)
    Yvar = torch.full_like(Y, 0.05 ** 2) if noise == "reported" else None
    cfg = SurrogateConfig(fit_maxiter=50)
    base = Surrogate.fit(X[:20], Y[:20], None if Yvar is None else Yvar[:20], config=cfg)
    sur = condition(base, X, Y, Yvar)
    Xs = torch.rand(50, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 4 - 2

    mean, var = sur.mean_var_features(sur.features(Xs))
    ref_mean, ref_var = _closed_form(base, X, Y, Yvar, Xs)
    assert torch.allclose(mean.reshape(-1), ref_mean, atol=1e-6, rtol=1e-6)
    assert torch.allclose(var.reshape(-1), ref_var, atol=1e-6, rtol=1e-5)
    # the new observations count: the base posterior is far off at them, the conditioned one is not
    new_mean, _ = sur.posterior_mean_std(X[20:])
    old_mean, _ = base.posterior_mean_std(X[20:])
    assert (new_mean - Y[20:]).abs().max() < 0.5 * (old_mean - Y[20:]).abs().max()

    held = hyper_state(sur.models[0])
    for key, value in hyper_state(base.models[0]).items():
        assert torch.equal(held[key], value), key
    info = sur.fit_info
    assert (info.num_observations, info.num_fit, info.num_conditioning) == (30, 20, 30)
    assert "not refitted" in info.messages[0]

    # a refit on the same 30 moves the hyperparameters (so the check above is not vacuous)
    refit = Surrogate.fit(X, Y, Yvar, config=cfg, previous=base.state())
    moved = hyper_state(refit.models[0])
    assert any(not torch.allclose(moved[k], v) for k, v in held.items())

    # the state rebuilds the same posterior from the same data
    again = Surrogate.from_state(SurrogateState.from_bytes(sur.state().to_bytes()), X, Y, Yvar)
    m2, v2 = again.mean_var_features(again.features(Xs))
    assert torch.allclose(m2, mean, atol=1e-12) and torch.allclose(v2, var, atol=1e-12)


def test_condition_refuses_data_of_another_kind() -> None:
    X, Y = _data(12)
    base = Surrogate.fit(X[:8], Y[:8], config=SurrogateConfig(fit_maxiter=20))
    with pytest.raises(SurrogateError, match="noise"):
        condition(base, X, Y, torch.full_like(Y, 0.01))
    with pytest.raises(SurrogateError, match="objectives"):
        condition(base, X, torch.cat([Y, Y], dim=1))
    with pytest.raises(SurrogateError, match="shape"):
        condition(base, X[:, :2], Y)
    assert math.isfinite(float(condition(base, X, Y).posterior_mean_std(X)[0].sum()))
