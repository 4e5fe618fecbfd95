r"""Scalarization of several objectives into one "higher is better" value.

Signed outcomes `v_j = s_j y_j` (`s_j = +1` to maximize, `−1` to minimize), then

- weighted sum: `g(v) = Σ_j w_j v_j`;
- Chebyshev (augmented): `g(v) = min_j w_j ṽ_j + ρ Σ_j w_j ṽ_j`, `ṽ_j = (v_j − lo_j)/(hi_j − lo_j)`
  with `lo`, `hi` the range of the signed training outcomes (so objectives in different units
  are comparable);
- ParEGO (``"parego"``): the augmented Chebyshev `g` with weights drawn per SMC chunk
  (``pareto.parego_weights``, passed as ``weights``; uniform when none are given).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from optimizer.errors import ConfigError, format_choice_error


@dataclass(frozen=True)
class Scalarization:
    """`g: ... x m → ...`, fixed at construction (weights, signs, Chebyshev range)."""

    kind: str
    weights: Tensor
    signs: Tensor
    lo: Tensor
    scale: Tensor
    rho: float
    #: outcomes beyond the first ``columns`` (outcome constraints) are ignored (None: none)
    columns: int | None = None

    def signed(self, Y: Tensor) -> Tensor:
        """`v = s ⊙ y` for `... x m` outcomes."""
        return Y[..., :self.columns] * self.signs.to(Y)

    def apply_signed(self, V: Tensor) -> Tensor:
        """`g(v)` for `... x m` signed values (already sign-flipped)."""
        V = V[..., :self.columns]
        w = self.weights.to(V)
        if self.kind == "weighted_sum":
            return (V * w).sum(-1)
        U = (V - self.lo.to(V)) / self.scale.to(V)
        wu = U * w
        return wu.min(dim=-1).values + self.rho * wu.sum(-1)

    def __call__(self, Y: Tensor) -> Tensor:
        """`g(s ⊙ y)` for `... x m` raw outcomes."""
        return self.apply_signed(self.signed(Y))


def make_scalarization(
    Y: Tensor, *, maximize: bool | Sequence[bool],
    weights: Sequence[float] | None, kind: Literal["weighted_sum", "chebyshev", "parego"] | str,
    rho: float = 0.05,
) -> Scalarization:
    """Build `g` for `n x m` training outcomes ``Y`` (used only for the Chebyshev range)."""
    m = Y.shape[-1]
    if kind not in ("weighted_sum", "chebyshev", "parego"):
        raise ConfigError(format_choice_error("scalarization", kind,
                                              ("weighted_sum", "chebyshev", "parego")))
    if kind == "parego":  # ParEGO is Chebyshev with per-chunk random weights (pareto.py)
        kind = "chebyshev"
    max_t = (maximize,) * m if isinstance(maximize, bool) else tuple(maximize)
    if len(max_t) == 1 and m > 1:
        max_t = max_t * m
    if len(max_t) != m:
        raise ConfigError(
            f"maximize={tuple(max_t)} has {len(max_t)} entries but Y has {m} objectives; give one "
            "bool per objective (or a single bool)"
        )
    w = (1.0,) * m if weights is None else tuple(float(x) for x in weights)
    if len(w) != m:
        raise ConfigError(
            f"weights={w} has {len(w)} entries but Y has {m} objectives; give one weight per "
            "objective"
        )
    if any(x < 0 for x in w) or sum(w) <= 0:
        raise ConfigError(f"weights={w} must be non-negative with a positive sum")
    dt = Y.dtype if Y.is_floating_point() else torch.float64
    signs = torch.tensor([1.0 if mx else -1.0 for mx in max_t], dtype=dt, device=Y.device)
    V = Y.to(dt) * signs
    lo = V.min(dim=0).values
    rng = V.max(dim=0).values - lo
    scale = torch.where(rng > 0, rng, torch.ones_like(rng))  # constant objective: unit range
    return Scalarization(kind=kind, weights=torch.tensor(w, dtype=dt, device=Y.device),
                         signs=signs, lo=lo, scale=scale, rho=float(rho))
