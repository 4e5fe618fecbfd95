"""The candidate prefilter shared by the fast screening and the multi-task picks
(``prefilter.prefilter_keep``): far-infeasible designs tie on the floored log-PoF axis and rank
by the feasibility-weighted tiebreak; past ``MAX_ND_POINTS`` the constraint axis is folded into
the first (memory bound)."""
from __future__ import annotations

import pytest
import torch

from optimizer.surrogate import constraints
from optimizer.surrogate.prefilter import lowest_layers, pareto_layers, prefilter_keep


def test_far_infeasible_designs_do_not_fill_the_layers() -> None:
    g = torch.Generator().manual_seed(0)
    n = 600
    ucb = torch.rand(n, generator=g, dtype=torch.float64)
    # the first half: optimistic but far infeasible, each at its own (distinct) log PoF, so
    # without a floor every one of them is on a low layer of (ucb, log PoF)
    far = torch.arange(n) < n // 2
    lp = torch.where(far, -1000.0 - 50.0 * torch.rand(n, generator=g, dtype=torch.float64),
                     -0.5 * torch.rand(n, generator=g, dtype=torch.float64))
    ucb = ucb + far.double()  # every far one above every near one
    keep = prefilter_keep(ucb.unsqueeze(-1), ucb, 40, log_pof=lp, spread=1.0)
    # tied on the axis, the far ones form one chain by UCB: one per layer
    assert int(keep.sum()) == 40 and int((keep & far).sum()) <= 5
    raw = lowest_layers(torch.stack([ucb, lp], -1), ucb, 40)  # the axis not floored
    assert int((raw & far).sum()) >= 20


def test_past_max_nd_points_the_constraint_axis_is_folded(monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(1)
    b = 300
    mean = torch.randn(b, generator=g, dtype=torch.float64)
    std = torch.rand(b, generator=g, dtype=torch.float64)
    lp = -3.0 * torch.rand(b, generator=g, dtype=torch.float64)
    cols = torch.stack([mean, std], -1)
    full = prefilter_keep(cols, mean, 50, log_pof=lp)
    monkeypatch.setattr(constraints, "MAX_ND_POINTS", 100)
    folded = prefilter_keep(cols, mean, 50, log_pof=lp)
    # the approximation: layers of (mean + log PoF · spread of mean, std), ties by mean + log PoF
    layer = pareto_layers(mean + lp * float(mean.std()), std)
    o1 = torch.argsort(mean + lp, descending=True, stable=True)
    expect = torch.zeros(b, dtype=torch.bool)
    expect[o1[torch.argsort(layer[o1], stable=True)[:50]]] = True
    assert torch.equal(folded, expect) and not torch.equal(folded, full)
