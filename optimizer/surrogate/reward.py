r"""The SMC reward built from the surrogate: optimistic, scalarized, differentiable.

`r̂(x) = g(s ⊙ μ(φ(x)) + β σ(φ(x)))`

`μ`, `σ`: posterior mean and latent std per objective; `s_j = ±1` the direction (so every term is
"higher is better"); `β ≥ 0` the optimism (β = 0: plain mean); `g` the scalarization (weighted sum
or Chebyshev, ``scalarize.py``). `μ` and `σ²` are the exact marginals from cached solves in chunks
(``Surrogate.marginal_mean_var``): SMC evaluates thousands of particles per step, and BoTorch's
joint posterior would build a `B x B` covariance only to read its diagonal.
With one objective to maximize and `w = 1`: `r̂ = μ + β σ`.

The DAS sampler tilts the prior by `exp(r̂/α)`; it reads ``reward.differentiable`` (copied from
`φ`) to choose guided (gradient proposal) or gradient-free SMC.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

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

    Attributes:
        differentiable: True when the feature map is; gradients flow to the designs.

    >>> r_hat = sur.reward(beta=2.0)
    >>> result = optimizer.das.sample(prior, r_hat, num_particles=64, alpha=0.1)
    """

    def __init__(self, surrogate: Surrogate, *, beta: float, scalarization: Scalarization,
                 method: str = "cached") -> None:
        if method not in ("cached", "botorch"):
            raise ValueError(f"SurrogateReward method={method!r}: use 'cached' or 'botorch'")
        self.surrogate = surrogate
        self.method = method
        self.beta = float(beta)
        self.scalarization = scalarization
        self.differentiable = bool(getattr(surrogate.feature_map, "differentiable", True))

    def __call__(self, X: Tensor) -> Tensor:
        """`r̂(X)` for `B x *design_shape` designs: a `B`-dim Tensor in ``X``'s dtype, at least
        float32 (half-precision designs must not round `r̂ / α`, which the weights exponentiate)."""
        sur = self.surrogate
        Z = sur.features(X)
        mu, var = (sur.marginal_mean_var(Z) if self.method == "cached"
                   else sur.mean_var_features(Z))
        # Clamp before sqrt: a zero variance (at a noiseless training point) has no gradient.
        v = self.scalarization.signed(mu) + self.beta * var.clamp_min(1e-12).sqrt()
        return self.scalarization.apply_signed(v).to(torch.promote_types(X.dtype, torch.float32))

    def __repr__(self) -> str:
        return (f"SurrogateReward(beta={self.beta}, scalarization={self.scalarization.kind!r}, "
                f"objectives={self.surrogate.num_objectives}, "
                f"differentiable={self.differentiable})")
