r"""Outcome constraints in the surrogate: probability of feasibility and BoTorch's constrained forms.

The surrogate's outputs are `m` objective columns followed by `k` constraint columns
(``SurrogateConfig.num_constraints``), each constraint signed so that feasible ⇔ `c_j(x) ≤ 0`
(BoTorch's convention; ``optimizer.campaign.config_constraints`` builds the slack). Every column
has its own independent GP, so with latent posterior `c_j(x) ~ N(μ_j, σ_j²)`:

    `PoF(x) = Π_j Φ(−μ_j(x) / σ_j(x))`,   `log PoF(x) = Σ_j log Φ(−μ_j / σ_j)`

(``log_ndtr``: exact, finite and differentiable far into the infeasible tail; no floor, so two
far-infeasible designs still rank by their PoF; the gradient is held below ``Z_GRAD``).

Where it enters:

- SMC reward (``reward.SurrogateReward`` with ``alpha``): `r̂_c(x) = r̂(x) + α log PoF(x)`, so the
  tilted target is `p_pre(x) · exp(r̂_c(x)/α) = p_pre(x) · exp(r̂(x)/α) · PoF(x)`;
- qLogNEI screening: BoTorch's ``constraints=[c_j]`` on posterior samples (a smooth sigmoid
  feasibility weight, temperature ``ETA`` times the constraint's spread; the incumbent is the
  best feasible baseline point).
  In the fast path's greedy batch, once the incremental gain is saturated (below
  ``screening.SATURATED`` of the first pick's) the next pick is the highest single-candidate
  value: otherwise the largest of negligible gains is an infeasible design's (its improvement
  times the fat-tailed feasibility weight); the reference path (``method="botorch"``) keeps
  BoTorch's greedy as is;
- qLogNEHVI screening (``acquisition_mo.py``): the same ``constraints`` (expected *feasible*
  hypervolume improvement: each posterior sample's front holds only its feasible baseline
  points, a candidate's improvement is weighted by its sample's feasibility); the reference
  point is inferred from the feasible observations, the baseline takes feasible ones first and
  the prefilter's layers gain a log PoF axis;
- qUCB screening: the MC objective `(g(y) + M) · Π_j sigmoid(−c_j/η) − M` (BoTorch's
  ``apply_constraints``), `M` the infeasible cost: `g + M ≥ 0` over the observed data;
- the fast path's prefilter: Pareto layers of (scalarized mean, std, log PoF floored at
  ``PREFILTER_LOG_POF_FLOOR``): constrained EI `EI(μ, σ) · PoF` increases in all three, so the
  layers still hold its maximizer (up to designs of negligible PoF).

>>> lp = log_pof(mean[:, m:], var[:, m:])        # `b` log-probabilities of feasibility
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from botorch.acquisition.objective import GenericMCObjective
from botorch.utils.objective import apply_constraints
from torch import Tensor

#: Sigmoid temperature of the MC feasibility weight (BoTorch's default), in units of each
#: constraint's standard deviation over the training data (so any unit gets the same sharpness).
ETA = 1e-3
#: Below this `z = −μ/σ` (`log Φ(z) ≈ −25`, `PoF ≈ 1e-11`) the GRADIENT of each term
#: `log Φ(z)` is held at its slope here, while its value stays exact: guidance gradients stay
#: bounded where a near-noiseless constraint GP has a tiny `σ`, and rankings are kept (a floor
#: on the value made every design past it tie, however much likelier one is to be feasible).
Z_GRAD = -6.9
#: `|z|` is clamped here so that `log Φ(z) ≈ −z²/2` stays finite in float32 (no design ties
#: before `μ/σ = 10¹⁵`).
Z_MAX = 1e15
#: The prefilter's log PoF axis (``screening``) is floored here (`PoF ≈ 1e-11`): for KEEPING
#: candidates, designs that far into the infeasible tail are equally worthless, and without the
#: floor their spread along that axis puts many of them on the early Pareto layers, crowding out
#: feasible candidates. Only that axis: the reward and the prefilter's tiebreak use the exact
#: value, so such designs still rank by their probability of feasibility.
PREFILTER_LOG_POF_FLOOR = -25.0
#: Pareto layers in three dimensions cost `O(b²)` memory; above this many points the prefilter
#: folds log PoF into the mean axis instead (an approximation; campaigns' rounds are smaller).
MAX_ND_POINTS = 8192


def num_objective_columns(sur: Any) -> int:
    """`m`: the surrogate's outputs minus its ``config.num_constraints`` constraint columns."""
    return int(sur.num_objectives) - int(sur.config.num_constraints)


def log_pof(mean: Tensor, var: Tensor) -> Tensor:
    """`Σ_j log Φ(−μ_j/σ_j)` over the last dimension of `... x k` constraint means and latent
    variances: `...`-dim (0 when `k = 0`); each term exact (``torch.special.log_ndtr``: finite
    far into the tail, `≈ −z²/2`), differentiable in both, its gradient held below ``Z_GRAD``
    (:func:`log_phi`)."""
    if mean.shape[-1] == 0:
        return mean.new_zeros(mean.shape[:-1])
    std = var.clamp_min(1e-12).sqrt()
    return log_phi(-mean / std).sum(-1)


def log_phi(z: Tensor) -> Tensor:
    """`log Φ(z)` elementwise, exact in value (`|z|` clamped at ``Z_MAX``); below ``Z_GRAD``
    its gradient is the slope at ``Z_GRAD`` (straight-through: value and gradient of two
    expressions), so a far-infeasible design still gets a push toward feasibility, bounded."""
    z = z.clamp(-Z_MAX, Z_MAX)
    zd = z.detach()
    # value max(z, Z_GRAD), gradient dz everywhere: the slope of log Φ taken at max(z, Z_GRAD)
    held = torch.where(zd < Z_GRAD, z - zd + Z_GRAD, z)
    lp = torch.special.log_ndtr(held)
    return lp + (torch.special.log_ndtr(zd) - lp.detach())


def surrogate_log_pof(sur: Any, mean: Tensor, var: Tensor) -> Tensor | None:
    """log PoF from a surrogate's `b x (m + k)` posterior mean and variance, or None when the
    surrogate has no constraint columns."""
    k = int(sur.config.num_constraints)
    if k == 0:
        return None
    return log_pof(mean[..., -k:], var[..., -k:])


def feasible_rows(sur: Any) -> Tensor:
    """`n` bools: the training rows whose every constraint column is `≤ 0` (all True without)."""
    k = int(sur.config.num_constraints)
    Y = sur.train_Y
    if k == 0:
        return torch.ones(Y.shape[0], dtype=torch.bool, device=Y.device)
    return (Y[:, -k:] <= 0).all(-1)


def feasible_first(score: Tensor, sur: Any) -> Tensor:
    """``score`` of the observed rows with every infeasible row moved below every feasible one
    (order within each group kept): "the best observations" then means the best feasible ones
    (qLogNEI's baseline pool, the local conditioning subset)."""
    ok = feasible_rows(sur)
    if bool(ok.all()) or score.numel() == 0:
        return score
    span = float(score.max() - score.min()) + 1.0
    return torch.where(ok, score, score - span)


def botorch_constraints(m: int, k: int) -> list[Callable[[Tensor], Tensor]]:
    """BoTorch constraint callables, `samples[..., m + j]` for `j < k` (feasible when `≤ 0`)."""
    def column(i: int) -> Callable[[Tensor], Tensor]:
        return lambda Y: Y[..., i]

    return [column(m + j) for j in range(k)]


def mc_objective(sur: Any, g: Callable[[Tensor], Tensor],
                 acquisition: str) -> tuple[GenericMCObjective, dict[str, Any]]:
    """The MC objective of the screening acquisition and the extra keyword arguments of
    qLogNEI (``constraints``, ``eta``); see the module docstring. ``g`` scalarizes the objective
    columns only (``Surrogate.scalarization``)."""
    k = int(sur.config.num_constraints)

    def scalarized(samples: Tensor, X: Tensor | None = None) -> Tensor:
        return g(samples)

    if k == 0:
        return GenericMCObjective(scalarized), {}
    m = num_objective_columns(sur)
    cons = botorch_constraints(m, k)
    C = sur.train_Y[:, m:].to(sur.dtype)
    spread = C.std(0) if C.shape[0] > 1 else torch.ones(k, dtype=C.dtype)
    eta = ETA * torch.where(torch.isfinite(spread) & (spread > 0), spread, torch.ones_like(spread))
    if acquisition in ("qlognei", "qlognehvi"):  # qLogNEHVI: its own objective, same kwargs
        return GenericMCObjective(scalarized), {"constraints": cons, "eta": eta}
    observed = g(sur.train_Y.to(sur.dtype))
    span = float(observed.max() - observed.min()) if observed.numel() else 1.0
    cost = max(0.0, -float(observed.min()) if observed.numel() else 0.0) + span + 1.0

    def constrained(samples: Tensor, X: Tensor | None = None) -> Tensor:
        return apply_constraints(obj=g(samples), constraints=cons, samples=samples,
                                 infeasible_cost=cost, eta=eta)

    return GenericMCObjective(constrained), {}


def pareto_layers_nd(points: Tensor) -> Tensor:
    """Layer of each of `b x d` points (every column maximized) in non-dominated sorting: 0 for
    the front, 1 for the front of the rest, ... (`b` longs). `O(b² d)` time, `O(b²)` memory."""
    b = points.shape[0]
    P = points.double()
    dom = torch.zeros(b, b, dtype=torch.bool)
    for s in range(0, b, 1024):  # dom[i, j]: i dominates j
        A = P[s:s + 1024].unsqueeze(1)
        dom[s:s + 1024] = (A >= P.unsqueeze(0)).all(-1) & (A > P.unsqueeze(0)).any(-1)
    count = dom.sum(0)
    layer = torch.full((b,), -1, dtype=torch.long)
    left = torch.ones(b, dtype=torch.bool)
    k = 0
    while bool(left.any()):
        front = left & (count == 0)
        layer[front] = k
        left &= ~front
        count = count - dom[front].sum(0)
        k += 1
    return layer
