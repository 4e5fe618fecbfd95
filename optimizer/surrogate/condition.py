r"""Condition a fitted surrogate on more observations without re-fitting its hyperparameters.

A fit's expensive part is the marginal-likelihood optimization of the hyperparameters `θ`
(lengthscales, noise, mean constant; ``fitting.optimize_mll``). Given `θ`, the GP posterior on `n`
observations is one Cholesky of the `n x n` kernel matrix:

`μ(z) = c + k_θ(z, Z) (K_θ + Σ)^{-1} (ỹ − c)`, `σ²(z) = k_θ(z, z) − k_θ(z, Z) (K_θ + Σ)^{-1} k_θ(Z, z)`,

with `ỹ` the standardized outcomes and `Σ` the (fixed or inferred) noise. ``condition`` builds
that posterior on the new data with `θ` held at a previous fit's values: the model the previous
fit would be on the new data had its optimizer not moved `θ` at all. The input bounds of the
previous fit are kept (lengthscales keep their meaning in feature space); the outcome
standardization and the conditioning subset follow the data as in every fit, so the state
(``Surrogate.state``) rebuilds the same posterior with ``Surrogate.from_state``.

Used by the asynchronous pipeline's re-scoring (``optimizer.campaign.rescoring``): results that
arrive between full fits update the posterior in milliseconds instead of a refit's seconds.

>>> sur = Surrogate.fit(X[:20], Y[:20])
>>> sur2 = condition(sur, X, Y)                       # all 30 rows, θ of the fit on 20
>>> sur2.fit_info.num_fit, sur2.fit_info.num_observations
(20, 30)
"""
from __future__ import annotations

import time

import gpytorch
import torch
from torch import Tensor

from optimizer.errors import SurrogateError
from optimizer.surrogate.fitting import build_gp, hyper_state, load_hyper, subset_indices
from optimizer.surrogate.gp import FitInfo, Surrogate
from optimizer.surrogate.scalarize import make_scalarization
from optimizer.surrogate.validation import check_training_data


def condition(sur: Surrogate, X: Tensor, Y: Tensor, Yvar: Tensor | None = None) -> Surrogate:
    """``sur``'s hyperparameters conditioned on the designs ``X`` and results ``Y`` (all of them,
    old and new rows; see the module docstring).

    Args:
        sur: a fitted surrogate (its hyperparameters, feature map, config and input bounds).
        X: `n x *design_shape` designs; Y: `n x m` results; Yvar: `n x m` noise or None (as
            ``Surrogate.fit``; a reported noise needs the same kind of noise model as ``sur``).

    Returns:
        A new ``Surrogate`` in eval mode; ``fit_info`` keeps ``num_fit`` and ``fit_ok`` of the fit
        that set the hyperparameters, ``warm_started`` True and says so in ``messages``.

    Raises:
        SurrogateError: the data does not fit ``sur`` (design shape, objectives, noise kind).
    """
    X, Y, Yvar = check_training_data(X, Y, Yvar)
    if tuple(X.shape[1:]) != sur.design_shape:
        raise SurrogateError(f"X has designs of shape {tuple(X.shape[1:])}; the surrogate was fitted "
                             f"on {sur.design_shape}; refit with Surrogate.fit")
    if Y.shape[1] != sur.num_objectives:
        raise SurrogateError(f"Y has {Y.shape[1]} objectives; the surrogate models "
                             f"{sur.num_objectives}; refit with Surrogate.fit")
    if (Yvar is None) != (sur.train_Yvar is None):
        raise SurrogateError("Yvar is " + ("None" if Yvar is None else "given") + " but the "
                             "surrogate was fitted with" + ("" if Yvar is None else "out") +
                             " reported noise (a different noise model); refit with Surrogate.fit")
    t0 = time.perf_counter()
    cfg = sur.config
    Z = Surrogate._features(sur.feature_map, X, sur.dtype)
    Yd, Yvd = Y.to(sur.dtype), Surrogate._noise(Yvar, Y, sur.dtype, cfg)
    # the conditioning subset as Surrogate.fit chooses it (all rows up to max_conditioning_size)
    score = make_scalarization(Yd, maximize=cfg.maximize, weights=cfg.weights,
                               kind=cfg.scalarization, rho=cfg.chebyshev_rho)(Yd)
    cond_idx = subset_indices(score, cfg.max_conditioning_size, cfg.seed + 1).to(Z.device)
    bounds = sur.bounds
    models = []
    with gpytorch.settings.max_cholesky_size(cfg.cholesky_max_size), torch.no_grad():
        for j, old in enumerate(sur.models):
            yv = None if Yvd is None else Yvd[cond_idx, j:j + 1]
            model = build_gp(Z[cond_idx], Yd[cond_idx, j:j + 1], yv, bounds)
            load_hyper(model, hyper_state(old), strict=True)
            models.append(model.eval())
    prev = sur.fit_info
    added = int(X.shape[0]) - prev.num_observations
    info = FitInfo(num_observations=int(X.shape[0]), num_fit=prev.num_fit,
                   num_conditioning=int(cond_idx.numel()), warm_started=True, fit_ok=prev.fit_ok,
                   messages=(f"conditioned on {X.shape[0]} observations ({added:+d}) with the "
                             f"hyperparameters of a fit on {prev.num_fit}, not refitted",
                             *[m for m in prev.messages if m and m != "ok"][:2]),
                   seconds=time.perf_counter() - t0)
    return Surrogate(models, feature_map=sur.feature_map, config=cfg, X=X, Y=Y, Yvar=Yvar, Z=Z,
                     cond_idx=cond_idx, bounds=bounds, fit_info=info)
