r"""The SMC reward built from the surrogate: optimistic, scalarized, differentiable.

`r̂(x) = g(s ⊙ μ(φ(x)) + β σ(φ(x)))`

`μ`, `σ`: posterior mean and latent std per objective; `s_j = ±1` the direction (so every term is
"higher is better"); `β ≥ 0` the optimism (β = 0: plain mean); `g` the scalarization (weighted sum
or Chebyshev, ``scalarize.py``). `μ` and `σ²` are the exact marginals from cached solves in chunks
(``Surrogate.marginal_mean_var``): SMC evaluates thousands of particles per step, and BoTorch's
joint posterior would build a `B x B` covariance only to read its diagonal.
With one objective to maximize and `w = 1`: `r̂ = μ + β σ`.

Outcome constraints (``config.num_constraints`` trailing output columns) are left out of `g`;
given the round's ``alpha``, the reward adds `α log PoF(x)` (``constraints.py``), so the SMC
target `p_pre · exp(r̂/α)` becomes `p_pre · exp(r̂/α) · PoF` (differentiable: guidance works).

The DAS sampler tilts the prior by `exp(r̂/α)`; it reads ``reward.differentiable`` (copied from
`φ`) to choose guided (gradient proposal) or gradient-free SMC.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from optimizer.surrogate.constraints import log_pof
from optimizer.surrogate.scalarize import Scalarization

if TYPE_CHECKING:
    from optimizer.surrogate.gp import Surrogate


class SurrogateReward:
    """Callable `B x *design_shape → B` for ``optimizer.das.sample``.

    Args:
        surrogate: a fitted ``Surrogate``.
        beta: `β`, the weight of the posterior std.
        scalarization: `g` (from ``Surrogate.scalarization``).
        method: ``"cached"`` (default: ``Surrogate.marginal_mean_var``) or ``"botorch"`` (the
            joint ``model.posterior``, `O(B²)` memory: the reference the tests and bench compare to).
        alpha: `α` of the round, the weight of `log PoF` when the surrogate has constraint
            columns (None: the objective part only, e.g. for ``alpha = "auto"``'s KL estimate).

    Attributes:
        differentiable: True when the feature map is; gradients flow to the designs.

    >>> r_hat = sur.reward(beta=2.0)
    >>> result = optimizer.das.sample(prior, r_hat, num_particles=64, alpha=0.1)
    """

    def __init__(self, surrogate: Surrogate, *, beta: float, scalarization: Scalarization,
                 method: str = "cached", alpha: float | None = None) -> None:
        if method not in ("cached", "botorch"):
            raise ValueError(f"SurrogateReward method={method!r}: use 'cached' or 'botorch'")
        self.surrogate = surrogate
        self.method = method
        self.beta = float(beta)
        self.scalarization = scalarization
        self.alpha = None if alpha is None else float(alpha)
        self.num_constraints = int(surrogate.config.num_constraints)
        self.differentiable = bool(getattr(surrogate.feature_map, "differentiable", True))

    def __call__(self, X: Tensor) -> Tensor:
        """`r̂(X)` for `B x *design_shape` designs: a `B`-dim Tensor in ``X``'s dtype, at least
        float32 (half-precision designs must not round `r̂ / α`, which the weights exponentiate)."""
        sur = self.surrogate
        Z = sur.features(X)
        mu, var = (sur.marginal_mean_var(Z) if self.method == "cached"
                   else sur.mean_var_features(Z))
        k = self.num_constraints
        m = mu.shape[-1] - k
        # Clamp before sqrt: a zero variance (at a noiseless training point) has no gradient.
        v = self.scalarization.signed(mu[..., :m]) + self.beta * var[..., :m].clamp_min(1e-12).sqrt()
        r = self.scalarization.apply_signed(v)
        if k and self.alpha is not None:
            r = r + self.alpha * log_pof(mu[..., m:], var[..., m:])
        return r.to(torch.promote_types(X.dtype, torch.float32))

    def log_feasibility(self, X: Tensor) -> Tensor:
        """`log PoF(X)` of the outcome constraints (zeros without them): the α-free factor of the
        constrained target `p·exp(r̂/α)·PoF`, for ``alpha = "auto"``'s KL estimate."""
        sur = self.surrogate
        k = self.num_constraints
        if not k:
            return torch.zeros(len(X), dtype=torch.promote_types(X.dtype, torch.float32))
        mu, var = sur.marginal_mean_var(sur.features(X))
        m = mu.shape[-1] - k
        return log_pof(mu[..., m:], var[..., m:]).to(torch.promote_types(X.dtype, torch.float32))

    def __repr__(self) -> str:
        return (f"SurrogateReward(beta={self.beta}, scalarization={self.scalarization.kind!r}, "
                f"objectives={self.surrogate.num_objectives}, constraints={self.num_constraints}, "
                f"differentiable={self.differentiable})")
