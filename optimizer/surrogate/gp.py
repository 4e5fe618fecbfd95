r"""The GP surrogate of the oracle: one BoTorch ``SingleTaskGP`` per objective on features `φ(x)`.

`y_j(x) ~ GP(c_j, k_j(φ(x), φ(x')))`, observed `y_ij = y_j(x_i) + ε_ij`, `ε_ij ~ N(0, σ²_ij)`.

1. `z = φ(x)` (frozen feature map), inputs normalized to the unit cube by the data's fixed bounds
   (``Normalize``), outcomes standardized (``Standardize``);
2. noise: a reported variance `Yvar_ij` is the fixed observation noise (``train_Yvar``, floored at
   ``min_noise`` times the outcome's variance); without it the noise level is inferred;
3. hyperparameters maximize the exact marginal likelihood (``fit_gpytorch_mll``), starting from
   the previous round's state when given (warm start). Above ``fit_subset_size`` observations the
   fit uses a seeded subset (best quarter + random rest) — the cheap approximation that keeps a
   fit within seconds at thousands of points — and the posterior is still conditioned on all
   data (one Cholesky), up to ``max_conditioning_size``;
4. several objectives: independent GPs in a ``ModelListGP``.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gpytorch
import torch
from botorch.models import ModelListGP, SingleTaskGP
from botorch.models.model import Model
from torch import Tensor

from optimizer.errors import SurrogateError
from optimizer.features import FeatureMap, IdentityFeatures, feature_map_from_record
from optimizer.surrogate.config import SurrogateConfig
from optimizer.surrogate.fitting import (
    build_gp,
    hyper_state,
    input_bounds,
    load_hyper,
    optimize_mll,
    subset_indices,
)
from optimizer.surrogate.predictive import PredictiveCache
from optimizer.surrogate.scalarize import Scalarization, make_scalarization
from optimizer.surrogate.state import STATE_VERSION, SurrogateState
from optimizer.surrogate.validation import check_training_data, fingerprint

if TYPE_CHECKING:
    from optimizer.surrogate.reward import SurrogateReward


@dataclass(frozen=True)
class FitInfo:
    """How a fit went: sizes, warm start, per-objective success and the reason of a failure."""

    num_observations: int
    num_fit: int
    num_conditioning: int
    warm_started: bool
    fit_ok: tuple[bool, ...]
    messages: tuple[str, ...]
    seconds: float


class Surrogate:
    """A fitted GP surrogate over designs; build with ``Surrogate.fit`` or ``from_state``.

    Attributes:
        model: the BoTorch model on features (``SingleTaskGP``, or ``ModelListGP`` for `m > 1`).
        feature_map, config, fit_info: `φ`, the options, how the fit went.
        train_X, train_Y, train_Yvar: the training data as given (designs, results, noise).
        train_Z: `n x k` features `φ(train_X)` in the GP's dtype; cond_idx: rows conditioned on.
        design_shape: shape of one design; predictions refuse other shapes.

    >>> sur = Surrogate.fit(X, Y, None, feature_map=IdentityFeatures())  # X: `n x d`, Y: `n x 1`
    >>> mean, std = sur.posterior_mean_std(X_new)                        # `b x 1` each
    >>> r_hat = sur.reward(beta=2.0)                                     # for optimizer.das.sample
    """

    def __init__(self, models: list[SingleTaskGP], *, feature_map: FeatureMap,
                 config: SurrogateConfig, X: Tensor, Y: Tensor, Yvar: Tensor | None,
                 Z: Tensor, cond_idx: Tensor, bounds: Tensor, fit_info: FitInfo) -> None:
        self.models = models
        self.feature_map = feature_map
        self.config = config
        self.train_X, self.train_Y, self.train_Yvar = X, Y, Yvar
        self.train_Z = Z
        self.cond_idx = cond_idx
        self.bounds = bounds
        self.fit_info = fit_info
        self.design_shape = tuple(X.shape[1:])
        self.model: Model = models[0] if len(models) == 1 else ModelListGP(*models)
        self.model.eval()
        self._predictive: list[PredictiveCache] | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def fit(
        cls, X: Tensor, Y: Tensor, Yvar: Tensor | None = None, *,
        feature_map: FeatureMap | None = None, config: SurrogateConfig | None = None,
        previous: SurrogateState | None = None,
    ) -> Surrogate:
        """Fit the surrogate to `n x *design_shape` designs ``X`` and `n x m` results ``Y``.

        Args:
            X: designs, exactly as sent to the oracle.
            Y: results, one column per objective (raw sign; direction is ``config.maximize``).
            Yvar: reported noise variances (`n x m`), or None to infer the noise.
            feature_map: `φ` (default: ``IdentityFeatures()``).
            config: options (default ``SurrogateConfig()``).
            previous: last round's state; its hyperparameters start the fit (warm start).

        Returns:
            A ``Surrogate`` in eval mode. A failed likelihood optimization keeps the starting
            hyperparameters and is reported in ``fit_info`` (and a warning), not raised.
        """
        cfg = config or SurrogateConfig()
        fm = feature_map or IdentityFeatures()
        X, Y, Yvar = check_training_data(X, Y, Yvar)
        t0 = time.perf_counter()
        dtype = getattr(torch, cfg.dtype)
        Z, Yd, Yvd = cls._features(fm, X, dtype), Y.to(dtype), cls._noise(Yvar, Y, dtype, cfg)
        n, m = Yd.shape
        # One subset for all objectives, ranked by the scalarized signed outcome.
        Yo = Yd[:, :m - cfg.num_constraints]  # constraint columns: not part of the score
        score = make_scalarization(Yo, maximize=cfg.maximize, weights=cfg.weights,
                                   kind=cfg.scalarization, rho=cfg.chebyshev_rho)(Yo)
        fit_idx = subset_indices(score, cfg.fit_subset_size, cfg.seed).to(Z.device)
        cond_idx = subset_indices(score, cfg.max_conditioning_size, cfg.seed + 1).to(Z.device)
        bounds = input_bounds(Z[cond_idx])
        prev_hyper = previous.hyperparameters() if previous is not None else None
        warm = prev_hyper is not None and len(prev_hyper) == m
        models, ok, msgs = [], [], []
        with gpytorch.settings.max_cholesky_size(cfg.cholesky_max_size):
            for j in range(m):
                yv = None if Yvd is None else Yvd[:, j:j + 1]
                fit_model = build_gp(Z[fit_idx], Yd[fit_idx, j:j + 1],
                                   None if yv is None else yv[fit_idx], bounds)
                if warm and prev_hyper is not None and not load_hyper(fit_model, prev_hyper[j]):
                    warm = False
                good, msg = optimize_mll(fit_model, cfg)
                ok.append(good)
                msgs.append(msg)
                if torch.equal(fit_idx, cond_idx):
                    model = fit_model
                else:  # condition on more data with the fitted hyperparameters
                    model = build_gp(Z[cond_idx], Yd[cond_idx, j:j + 1],
                                   None if yv is None else yv[cond_idx], bounds)
                    load_hyper(model, hyper_state(fit_model), strict=True)
                models.append(model.eval())
        info = FitInfo(num_observations=n, num_fit=int(fit_idx.numel()),
                       num_conditioning=int(cond_idx.numel()), warm_started=warm,
                       fit_ok=tuple(ok), messages=tuple(msgs),
                       seconds=time.perf_counter() - t0)
        return cls(models, feature_map=fm, config=cfg, X=X, Y=Y, Yvar=Yvar, Z=Z,
                   cond_idx=cond_idx, bounds=bounds, fit_info=info)

    @classmethod
    def from_state(
        cls, state: SurrogateState, X: Tensor, Y: Tensor, Yvar: Tensor | None = None, *,
        feature_map: FeatureMap | None = None, objects: dict[str, Any] | None = None,
        allow_import: bool = False,
    ) -> Surrogate:
        """Rebuild a fitted surrogate from its state and the same training data (from storage).

        The posterior mean and variance are identical to the saved surrogate's. ``feature_map``
        defaults to the one saved in the state (embedding / callable maps are resolved through
        ``objects`` or ``allow_import``, see ``optimizer.features.feature_map_from_record``).
        """
        meta = state.meta
        X, Y, Yvar = check_training_data(X, Y, Yvar)
        fp = fingerprint(X, Y, Yvar)
        if fp != meta["fingerprint"]:
            raise SurrogateError(
                f"training data (n={X.shape[0]}, Yvar {'given' if Yvar is not None else 'None'}) "
                f"is not the data this state was fitted on (n={meta['num_observations']}, Yvar "
                f"{'given' if meta['has_yvar'] else 'None'}, fingerprint "
                f"{meta['fingerprint'][:12]}); pass the same observations in the same order, or "
                "refit with Surrogate.fit(X, Y, Yvar, previous=state) to warm-start on the new data"
            )
        if feature_map is None:
            feature_map = feature_map_from_record(meta["feature_map"], state.feature_tensors(),
                                                  objects=objects, allow_import=allow_import)
        else:
            state.check_feature_map(feature_map)
        cfg = state.config
        dtype = getattr(torch, cfg.dtype)
        Z = cls._features(feature_map, X, dtype)
        Yd, Yvd = Y.to(dtype), cls._noise(Yvar, Y, dtype, cfg)
        cond_idx = state.tensors["cond_idx"].to(Z.device)
        bounds = state.tensors["bounds"].to(device=Z.device, dtype=dtype)
        models = []
        with gpytorch.settings.max_cholesky_size(cfg.cholesky_max_size):
            for j in range(int(meta["num_objectives"])):
                yv = None if Yvd is None else Yvd[cond_idx, j:j + 1]
                model = build_gp(Z[cond_idx], Yd[cond_idx, j:j + 1], yv, bounds)
                # keep_transforms=False: the targets stay exactly as standardized at construction
                # (BoTorch's default round trip through untransform changes their last bit).
                model.load_state_dict({k: v.to(device=Z.device)
                                       for k, v in state.model_state(j).items()},
                                      strict=True, keep_transforms=False)
                models.append(model.eval())
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                  for k, v in meta["fit_info"].items()}
        info = FitInfo(**fields)
        return cls(models, feature_map=feature_map, config=cfg, X=X, Y=Y, Yvar=Yvar, Z=Z,
                   cond_idx=cond_idx, bounds=bounds, fit_info=info)

    @staticmethod
    def _features(fm: FeatureMap, X: Tensor, dtype: torch.dtype) -> Tensor:
        with torch.no_grad():
            Z = fm(X.to(dtype)).to(dtype)
        if not torch.isfinite(Z).all():
            rows = torch.nonzero(~torch.isfinite(Z).all(dim=1)).flatten().tolist()[:10]
            raise SurrogateError(
                f"feature map {fm.kind!r} returned non-finite features for design rows {rows}; "
                "check the feature map (e.g. an embedding network) on those designs"
            )
        return Z

    @staticmethod
    def _noise(Yvar: Tensor | None, Y: Tensor, dtype: torch.dtype,
               cfg: SurrogateConfig) -> Tensor | None:
        """`max(Yvar_ij, min_noise · Var(Y_j))`: the floor in standardized units, so results in
        any unit (1e-4 or 1e4) get the same relative floor (`Var = 1` for constant / one result)."""
        if Yvar is None:
            return None
        Yd = Y.to(dtype)
        var = Yd.var(dim=0) if Yd.shape[0] > 1 else torch.ones_like(Yd[0])
        var = torch.where(var > 0, var, torch.ones_like(var))
        return torch.maximum(Yvar.to(dtype), cfg.min_noise * var)

    # ------------------------------------------------------------------ prediction
    @property
    def num_objectives(self) -> int:
        """`m`, one GP per objective."""
        return len(self.models)

    @property
    def dtype(self) -> torch.dtype:
        """The GP's floating dtype (``config.dtype``)."""
        return self.train_Z.dtype

    def features(self, X: Tensor) -> Tensor:
        """`φ(X)` in the GP's dtype (differentiable when `φ` is): `b x k`."""
        self._check_designs(X, "X")
        return self.feature_map(X.to(self.dtype)).to(self.dtype)

    def _check_designs(self, X: Tensor, name: str) -> None:
        if tuple(X.shape[1:]) != self.design_shape or X.dim() < 2:
            raise SurrogateError(
                f"{name} has shape {tuple(X.shape)}; the surrogate was fitted on designs of "
                f"shape {self.design_shape}, so pass a `b x {' x '.join(map(str, self.design_shape))}`"
                " Tensor"
            )

    def mean_var_features(self, Z: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and latent variance (no observation noise) at features `b x k`: `b x m`."""
        with gpytorch.settings.max_cholesky_size(self.config.cholesky_max_size):
            post = self.model.posterior(Z)
            # botorch declares Model.posterior as the abstract Posterior (no mean / variance);
            # these GP models return a GPyTorchPosterior, which has both.
            return post.mean, post.variance  # type: ignore[attr-defined]

    def marginal_mean_var(self, Z: Tensor) -> tuple[Tensor, Tensor]:
        """Like ``mean_var_features`` (`b x m` each, same values) from cached solves in chunks:
        no `b x b` joint covariance, so memory stays `O(n)` per test point (``predictive.py``).
        The caches (one Cholesky per objective) are built on the first call."""
        if self._predictive is None:
            with gpytorch.settings.max_cholesky_size(self.config.cholesky_max_size):
                self._predictive = [PredictiveCache(m) for m in self.models]
        pairs = [c.mean_var(Z) for c in self._predictive]
        return (torch.stack([p[0] for p in pairs], dim=-1),
                torch.stack([p[1] for p in pairs], dim=-1))

    def posterior_mean_std(self, X: Tensor, *, chunk_size: int = 4096) -> tuple[Tensor, Tensor]:
        """Posterior mean and std of each objective at `b x *design_shape` designs: `b x m` each."""
        Z = self.features(X).detach()
        means, stds = [], []
        with torch.no_grad():
            for Zc in Z.split(chunk_size):
                mu, var = self.mean_var_features(Zc)
                means.append(mu)
                stds.append(var.clamp_min(0).sqrt())
        return torch.cat(means), torch.cat(stds)

    def scalarization(self, *, weights: tuple[float, ...] | None = None,
                      scalarization: str | None = None,
                      maximize: bool | tuple[bool, ...] | None = None) -> Scalarization:
        """The scalarization `g` (config defaults, overridable), ranged on the training data."""
        cfg = self.config
        m = self.num_objectives - cfg.num_constraints  # objective columns (constraints follow)
        g = make_scalarization(
            self.train_Y[:, :m].to(self.dtype),
            maximize=cfg.maximize if maximize is None else maximize,
            weights=cfg.weights if weights is None else weights,
            kind=scalarization or cfg.scalarization, rho=cfg.chebyshev_rho)
        return dataclasses.replace(g, columns=m) if cfg.num_constraints else g

    def reward(self, beta: float | None = None, *, weights: tuple[float, ...] | None = None,
               scalarization: str | None = None,
               maximize: bool | tuple[bool, ...] | None = None,
               method: str = "cached", alpha: float | None = None) -> SurrogateReward:
        """The SMC reward `r̂(x) = g(s ⊙ μ(φ(x)) + β σ(φ(x)))` (see ``reward.SurrogateReward``;
        ``method="botorch"`` is the joint-posterior reference); with outcome constraints and
        ``alpha``, plus `α log PoF(x)` (``optimizer.surrogate.constraints``)."""
        from optimizer.surrogate.reward import SurrogateReward

        return SurrogateReward(self, beta=self.config.beta if beta is None else float(beta),
                               scalarization=self.scalarization(
                                   weights=weights, scalarization=scalarization,
                                   maximize=maximize), method=method, alpha=alpha)

    def state(self) -> SurrogateState:
        """The serializable state (hyperparameters, transforms, feature map; no training data)."""
        record, ftensors = self.feature_map.to_record()
        tensors: dict[str, Tensor] = {"cond_idx": self.cond_idx.to(torch.int64),
                                      "bounds": self.bounds}
        for j, model in enumerate(self.models):
            for k, v in model.state_dict().items():
                tensors[f"model.{j}.{k}"] = v
        for k, v in ftensors.items():
            tensors[f"features.{k}"] = v
        meta = {
            "version": STATE_VERSION,
            "config": self.config.model_dump(mode="json"),
            "design_shape": list(self.design_shape),
            "num_objectives": self.num_objectives,
            "num_observations": int(self.train_X.shape[0]),
            "fingerprint": fingerprint(self.train_X, self.train_Y, self.train_Yvar),
            "has_yvar": self.train_Yvar is not None,
            "feature_map": record,
            "fit_info": dataclasses.asdict(self.fit_info),
        }
        return SurrogateState(meta=meta,
                              tensors={k: v.detach().clone() for k, v in tensors.items()})

