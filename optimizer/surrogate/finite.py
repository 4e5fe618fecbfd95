r"""The exact GP posterior restricted to a finite set of points, for fast screening.

Screening only ever asks for the joint posterior of a few hundred points (the prefiltered
candidates, qLogNEI's baseline, the pending designs). For one ``SingleTaskGP`` with transformed
conditioning inputs `X_R`, standardized targets `y_R`, noise `D_R`, prior mean `m` and kernel `k`:

    `K_R = k(X_R, X_R) + D_R = L Lᵀ`,  `α = K_R⁻¹ (y_R − m(X_R))`            (once: `O(r³)`)
    `V = L⁻¹ k(X_R, S)`,  `μ_S = m(S) + Vᵀ L⁻¹ (y_R − m)`,  `Σ_S = k(S, S) − Vᵀ V`   (`O(r² |S|)`)

then the outcome transform maps `μ_S`, `Σ_S` back to the data's units. ``FiniteSetModel`` serves
these as a BoTorch model whose input is the row index into `S`, so BoTorch's qLogNEI runs
unchanged at `O(|S|)` per candidate instead of GPyTorch's `O(r² (B + q))` solves per call.

The conditioning rows `R` are the surrogate's own (exact) or, above
``SurrogateConfig.screen_local_size`` / ``screen_exact_max_observations``, a data-chosen subset
of all observations (``local_rows``): the best eighth by observed outcome, the nearest
observations of the query points and a seeded random quarter (the long-range trend), with the
surrogate's hyperparameters and standardization (a "subset of data" GP whose subset is local to
the queries; error against the exact GP printed by ``bench/screening_bench.py``).

>>> cond = Conditioning.build(sur, rows)                 # rows: observation indices
>>> mean, var = cond.mean_var(Z)                         # `b x m` each, marginals only
>>> model = cond.finite_model(Z_set)                     # a BoTorch model over indices 0..|S|-1
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gpytorch
import torch
from botorch.models.model import Model
from botorch.posteriors import GPyTorchPosterior
from gpytorch.distributions import MultitaskMultivariateNormal, MultivariateNormal
from linear_operator.operators import DenseLinearOperator
from linear_operator.utils.cholesky import psd_safe_cholesky
from torch import Tensor

from optimizer.surrogate.gp import Surrogate

#: columns of `k(X_R, Z)` solved at once (bounds memory at `r x CHUNK` floats).
CHUNK = 2048


@dataclass
class _Objective:
    """One objective's cached solve: transformed inputs, `L`, `L⁻¹ (y − m)` and the transform."""

    model: gpytorch.models.ExactGP
    X: Tensor
    L: Tensor
    w: Tensor
    shift: Tensor
    scale: Tensor


class Conditioning:
    """The surrogate's GPs conditioned on observation rows ``rows`` (see module docstring)."""

    def __init__(self, objectives: list[_Objective], rows: Tensor) -> None:
        self.objectives = objectives
        self.rows = rows

    @classmethod
    def build(cls, sur: Surrogate, rows: Tensor) -> Conditioning:
        """Condition each objective's GP (hyperparameters and standardization as fitted) on the
        observations ``rows`` (indices into ``sur.train_X``)."""
        noise = Surrogate._noise(sur.train_Yvar, sur.train_Y, sur.dtype, sur.config)
        Y = sur.train_Y.to(sur.dtype)
        objs = []
        with torch.no_grad(), gpytorch.settings.max_cholesky_size(sur.config.cholesky_max_size):
            for j, model in enumerate(sur.models):
                X = model.transform_inputs(sur.train_Z[rows])
                tf: Any = model.outcome_transform  # ``Standardize`` (``fitting.build_gp``)
                shift = tf.means.reshape(())
                scale = tf.stdvs.reshape(())
                y = (Y[rows, j] - shift) / scale
                if noise is not None:
                    d = noise[rows, j] / scale**2
                else:  # inferred homoskedastic noise, already in standardized units
                    d = model.likelihood.noise.reshape(-1)[:1].expand(rows.numel())
                K = model.covar_module(X).to_dense() + torch.diag_embed(d)
                L = psd_safe_cholesky(K)
                resid = (y - model.mean_module(X)).unsqueeze(-1)
                w = torch.linalg.solve_triangular(L, resid, upper=False).squeeze(-1)
                objs.append(_Objective(model, X, L, w, shift, scale))
        return cls(objs, rows)

    def _solve(self, o: _Objective, Z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        T = o.model.transform_inputs(Z)
        V = torch.linalg.solve_triangular(
            o.L, o.model.covar_module(o.X, T).to_dense(), upper=False)      # r x b
        mu = o.model.mean_module(T) + V.T @ o.w
        return T, V, mu

    def mean_var(self, Z: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and latent variance at raw features ``Z`` (`b x k`): `b x m` each, in
        the outcome's units."""
        means, variances = [], []
        with torch.no_grad():
            for o in self.objectives:
                mu_c, var_c = [], []
                for Zc in Z.split(CHUNK):
                    T, V, mu = self._solve(o, Zc)
                    var = o.model.covar_module(T, diag=True) - V.pow(2).sum(0)
                    mu_c.append(mu * o.scale + o.shift)
                    var_c.append(var * o.scale**2)
                means.append(torch.cat(mu_c))
                variances.append(torch.cat(var_c))
        floor = gpytorch.settings.min_variance.value(Z.dtype)
        return torch.stack(means, -1), torch.stack(variances, -1).clamp_min(floor)

    def finite_model(self, Z: Tensor) -> FiniteSetModel:
        """The joint posterior over the rows of ``Z`` (`s x k`) as a ``FiniteSetModel``."""
        means, covs = [], []
        with torch.no_grad():
            for o in self.objectives:
                T, V, mu = self._solve(o, Z)
                S = o.model.covar_module(T).to_dense() - V.T @ V
                S = 0.5 * (S + S.T)
                means.append(mu * o.scale + o.shift)
                covs.append(S * o.scale**2)
        return FiniteSetModel(torch.stack(means, -1), torch.stack(covs))


def local_rows(sur: Surrogate, Zq: Tensor, size: int, score: Tensor) -> Tensor:
    """A data-chosen conditioning subset of ``size`` observation rows for queries ``Zq``.

    The best ``size // 8`` observations by ``score`` (the scalarized observed outcome: they
    decide the incumbent), then the nearest observations of every query point in the GP's
    normalized input space scaled by the kernel's lengthscales, round-robin by neighbour rank
    (every query gets its 1st nearest, then its 2nd, ...), until three quarters of ``size``;
    then a seeded random rest (the long-range trend). Sorted indices; all rows when `n ≤ size`.
    """
    n = sur.train_Z.shape[0]
    if n <= size:
        return torch.arange(n)
    model = sur.models[0]
    with torch.no_grad():
        Xq = model.transform_inputs(Zq)
        Xa = model.transform_inputs(sur.train_Z)
        top = torch.argsort(score, descending=True, stable=True)[: size // 8]
        taken = torch.zeros(n, dtype=torch.bool)
        taken[top] = True
        k = min(n, max(1, -(-size // max(Xq.shape[0], 1)) + 1))
        # scaled by lengthscales of the first objective's kernel, when it has them, so
        # "nearest" means most correlated
        ls = _lengthscale(model)
        near = []
        for Qc in Xq.split(1024):
            d = torch.cdist(Qc / ls, Xa / ls)
            near.append(d.topk(k, dim=1, largest=False).indices)
        order = torch.cat(near).T.reshape(-1)                     # rank-major: round robin
        fresh = order[~taken[order]]
        # first occurrence of each row, in round-robin order
        uniq, inv = torch.unique(fresh, return_inverse=True)
        first = torch.full((uniq.numel(),), fresh.numel(), dtype=torch.long)
        first.scatter_reduce_(0, inv, torch.arange(fresh.numel()), reduce="amin")
        extra = uniq[torch.argsort(first)][: size - size // 4 - int(taken.sum())]
        taken[extra] = True
        if int(taken.sum()) < size:  # a seeded random quarter: the long-range trend
            rest = torch.nonzero(~taken).flatten()
            g = torch.Generator().manual_seed(sur.config.seed)
            taken[rest[torch.randperm(rest.numel(), generator=g)[: size - int(taken.sum())]]] = True
    return torch.nonzero(taken).flatten()


def _lengthscale(model: gpytorch.models.ExactGP) -> Tensor | float:
    """The ARD lengthscales of ``model``'s kernel (``1 x k``), or 1.0 when it has none."""
    for mod in model.covar_module.modules():
        ls = getattr(mod, "lengthscale", None)
        if isinstance(ls, Tensor):
            return ls.detach().reshape(1, -1)
    return 1.0


class FiniteSetModel(Model):
    """A BoTorch model over the `s` points of a finite set: input ``X[..., 0]`` is a row index.

    Args:
        mean: `s x m` posterior means; covar: `m x s x s` posterior covariances (independent
            objectives, as in a ``ModelListGP``).
    """

    def __init__(self, mean: Tensor, covar: Tensor) -> None:
        super().__init__()
        self._mean = mean
        self._covar = covar

    @property
    def num_outputs(self) -> int:
        return int(self._mean.shape[-1])

    @property
    def batch_shape(self) -> torch.Size:
        return torch.Size([])

    def posterior(self, X: Tensor, output_indices: list[int] | None = None,
                  observation_noise: bool | Tensor = False,
                  posterior_transform=None, **kwargs) -> GPyTorchPosterior:
        """The joint posterior of the indexed points (latent, no observation noise)."""
        idx = X[..., 0].round().long()
        outs = output_indices if output_indices is not None else range(self.num_outputs)
        mvns = []
        for j in outs:
            cov = self._covar[j][idx.unsqueeze(-1), idx.unsqueeze(-2)]
            # lazy: GPyTorch factors it with jitter when needed (a picked design evaluated
            # again, or near-duplicates, make it singular)
            mvns.append(MultivariateNormal(self._mean[idx, j], DenseLinearOperator(cov)))
        mvn = mvns[0] if len(mvns) == 1 else MultitaskMultivariateNormal.from_independent_mvns(mvns)
        post = GPyTorchPosterior(mvn)
        return posterior_transform(post) if posterior_transform is not None else post

    def forward(self, X: Tensor):  # pragma: no cover - BoTorch calls posterior()
        raise NotImplementedError("FiniteSetModel is queried through posterior()")
