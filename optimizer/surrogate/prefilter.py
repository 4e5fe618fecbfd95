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
    b = mean.shape[0]
    idx = torch.arange(b) if among is None else torch.nonzero(among).flatten()
    keep = torch.zeros(b, dtype=torch.bool)
    if idx.numel() <= size:
        keep[idx] = True
        return keep
    layer = pareto_layers(mean[idx], std[idx]) if extra is None else _layers3(
        mean[idx], std[idx], extra[idx])
    # order by (layer, -tiebreak): a stable sort by tiebreak, then by layer
    o1 = torch.argsort(tiebreak[idx], descending=True, stable=True)
    o2 = torch.argsort(layer[o1], stable=True)
    keep[idx[o1[o2[:size]]]] = True
    return keep


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


def _layers3(mean: Tensor, std: Tensor, extra: Tensor) -> Tensor:
    """Pareto layers of (mean, std, extra); past ``MAX_ND_POINTS`` points, of (mean + extra ·
    spread of mean, std), an approximation that bounds memory."""
    from optimizer.surrogate.constraints import MAX_ND_POINTS, pareto_layers_nd

    if mean.shape[0] <= MAX_ND_POINTS:
        return pareto_layers_nd(torch.stack([mean, std, extra], -1))
    spread = float(mean.std()) if mean.numel() > 1 else 1.0
    return pareto_layers(mean + extra * spread, std)
