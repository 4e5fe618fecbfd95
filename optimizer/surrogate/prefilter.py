r"""Cheap candidate filters run before qLogNEI: Pareto layers of (mean, std) and ancestor families.

A single candidate's expected improvement over a fixed incumbent,
`EI(μ, σ) = σ φ(u) + (μ − f*) Φ(u)` with `u = (μ − f*) / σ`, increases in both `μ` and `σ`
(`∂EI/∂μ = Φ(u) > 0`, `∂EI/∂σ = φ(u) > 0`). So whatever the incumbent, the candidate of highest
EI lies on the first Pareto layer of (scalarized posterior mean, scalarized posterior std), and
the `k` best lie in the first `k` layers. Keeping whole layers (``pareto_keep``) therefore never
drops the EI-best candidate; qLogNEI differs from EI only by the baseline's randomness and
correlation with the candidate, which the layers' breadth absorbs (tested on constructed cases).

Families (the SMC founder a particle descends from, per chunk) are thinned the same way: each
family keeps its best ``family_keep`` members by its own Pareto layers, so after an ESS collapse
one family's hundreds of copies cannot crowd every other family out of the qLogNEI set.

>>> keep = family_keep(mean, std, ucb, families, 2)     # bool mask
>>> keep &= pareto_keep(mean, std, ucb, 128, among=keep)

``extra`` (outcome constraints: log PoF, ``constraints.py``) adds a third maximized axis.
``prefilter_keep`` is the same filter for any maximized axes plus a constraint axis (floored log
PoF, feasibility-weighted tiebreak: ``feasibility_axis``), shared by the fast screening and the
multi-task picks (``multitask_outputs``).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def pareto_layers(mean: Tensor, std: Tensor) -> Tensor:
    """Layer of each point in the non-dominated sorting of (``mean``, ``std``), both maximized:
    0 for the Pareto front, 1 for the front of the rest, ... (`b` longs)."""
    b = mean.shape[0]
    layer = torch.full((b,), -1, dtype=torch.long)
    # sort by mean descending (ties: larger std first), then a point is on the current front
    # when its std exceeds every std before it among the points left
    order = torch.from_numpy(_lexsort(mean, std))
    left = order
    k = 0
    while left.numel():
        s = std[left]
        prev_max = torch.cat([s.new_full((1,), -float("inf")), torch.cummax(s, 0).values[:-1]])
        front = s > prev_max
        layer[left[front]] = k
        left = left[~front]
        k += 1
    return layer


def _lexsort(mean: Tensor, std: Tensor) -> np.ndarray:
    return np.lexsort((-std.double().cpu().numpy(), -mean.double().cpu().numpy()))


def pareto_keep(mean: Tensor, std: Tensor, tiebreak: Tensor, size: int,
                among: Tensor | None = None, extra: Tensor | None = None) -> Tensor:
    """Mask of the ``size`` points (of those in ``among``) with the lowest Pareto layer of
    (``mean``, ``std``[, ``extra``]), ties within the last layer broken by ``tiebreak`` (higher
    first)."""
    cols = torch.stack([mean, std] + ([] if extra is None else [extra]), -1)
    return lowest_layers(cols, tiebreak, size, among=among)


def lowest_layers(cols: Tensor, tiebreak: Tensor, size: int, among: Tensor | None = None) -> Tensor:
    """Mask of the ``size`` points (of those in ``among``) on the lowest Pareto layers of
    ``cols`` (`b x d`, every column maximized), ties within the last layer broken by
    ``tiebreak`` (higher first); past ``MAX_ND_POINTS`` points with `d > 2` see ``_layers``."""
    b = cols.shape[0]
    idx = torch.arange(b) if among is None else torch.nonzero(among).flatten()
    keep = torch.zeros(b, dtype=torch.bool)
    if idx.numel() <= size:
        keep[idx] = True
        return keep
    layer = _layers(cols[idx])
    # order by (layer, -tiebreak): a stable sort by tiebreak, then by layer
    o1 = torch.argsort(tiebreak[idx], descending=True, stable=True)
    o2 = torch.argsort(layer[o1], stable=True)
    keep[idx[o1[o2[:size]]]] = True
    return keep


def feasibility_axis(tiebreak: Tensor, log_pof: Tensor | None,
                     spread: float) -> tuple[Tensor, Tensor | None]:
    """The prefilter's outcome-constraint terms: (``tiebreak + log_pof · spread``, ``log_pof``
    floored at ``PREFILTER_LOG_POF_FLOOR``) — the tiebreak feasibility-weighted, and the Pareto
    axis on which far-infeasible designs tie (so they cannot fill the layers ahead of feasible
    ones by their optimism alone); ``(tiebreak, None)`` without constraints."""
    from optimizer.surrogate.constraints import PREFILTER_LOG_POF_FLOOR

    if log_pof is None:
        return tiebreak, None
    return tiebreak + log_pof * spread, log_pof.clamp_min(PREFILTER_LOG_POF_FLOOR)


def prefilter_keep(cols: Tensor, tiebreak: Tensor, size: int, *, log_pof: Tensor | None = None,
                   spread: float = 1.0, among: Tensor | None = None) -> Tensor:
    """The candidate prefilter of the finite acquisitions: mask of the ``size`` points (of those
    in ``among``) on the lowest Pareto layers of ``cols`` (`b x d`, maximized: each increases
    the acquisition) and, with constraints, the floored ``log_pof`` (``feasibility_axis``); the
    last layer's ties by ``tiebreak + log_pof · spread`` (``spread``: the objective's spread in
    the tiebreak's units)."""
    tie, axis = feasibility_axis(tiebreak, log_pof, spread)
    if axis is not None:
        cols = torch.cat([cols, axis.unsqueeze(-1)], -1)
    return lowest_layers(cols, tie, size, among=among)


def family_keep(mean: Tensor, std: Tensor, tiebreak: Tensor, families: Tensor, per_family: int,
                among: Tensor | None = None, extra: Tensor | None = None) -> Tensor:
    """Mask keeping at most ``per_family`` points of each family (``families``: `b` ids), chosen
    per family like ``pareto_keep``."""
    b = mean.shape[0]
    ok = torch.ones(b, dtype=torch.bool) if among is None else among.clone()
    keep = torch.zeros(b, dtype=torch.bool)
    ids, inv, counts = torch.unique(families, return_inverse=True, return_counts=True)
    small = counts[inv] <= per_family
    keep |= ok & small
    for f in torch.nonzero(counts > per_family).flatten().tolist():
        members = ok & (inv == f)
        keep |= pareto_keep(mean, std, tiebreak, per_family, among=members, extra=extra)
    return keep


def _layers(cols: Tensor) -> Tensor:
    """Pareto layers of the rows of ``cols`` (`b x d`); past ``MAX_ND_POINTS`` points with
    `d > 2`, the last column is folded into the first (`c_0 + c_last · spread of c_0`), an
    approximation that bounds memory (`O(b²)` otherwise)."""
    from optimizer.surrogate.constraints import MAX_ND_POINTS, pareto_layers_nd

    d = cols.shape[1]
    if d == 1:
        return pareto_layers(cols[:, 0], torch.zeros_like(cols[:, 0]))
    if d == 2:
        return pareto_layers(cols[:, 0], cols[:, 1])
    if cols.shape[0] <= MAX_ND_POINTS:
        return pareto_layers_nd(cols)
    first = cols[:, 0]
    spread = float(first.std()) if first.numel() > 1 else 1.0
    return _layers(torch.cat([(first + cols[:, -1] * spread).unsqueeze(-1), cols[:, 1:-1]], -1))
