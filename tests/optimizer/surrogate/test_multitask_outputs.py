"""Several outputs across fidelities (``optimizer.surrogate.multitask_outputs``): constrained and
Pareto picks of the expensive and the cheap oracle on multi-task GPs fitted to a few expensive
and many cheap results (the cheap task: another offset and scale, a smooth bias, noise)."""
from __future__ import annotations

import torch

from optimizer.surrogate.constraints import log_pof
from optimizer.surrogate.multitask_outputs import MultiTaskOutputs
from optimizer.surrogate.pareto import reference_point

A = torch.tensor([0.7, 0.3], dtype=torch.float64)
B = torch.tensor([0.2, 0.8], dtype=torch.float64)
BOUNDS = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
GRID = torch.rand(400, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)


def bowl(z: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
    return -((z - top) ** 2).sum(-1) * 4.0


def slack(z: torch.Tensor) -> torch.Tensor:
    """Feasible ⇔ `z₀ ≤ 0.4` (the bowl's top at `z₀ = 0.7` is not)."""
    return z[:, 0] - 0.4


def _tasks(outputs: list, n_main: int = 8, seed: int = 0) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    z_main = torch.rand(n_main, 2, generator=g, dtype=torch.float64)
    z_cheap = torch.rand(60, 2, generator=g, dtype=torch.float64)
    y_main = torch.stack([f(z_main) for f in outputs], -1)
    y_cheap = torch.stack([2.0 * f(z_cheap) + 1.0 + 0.1 * torch.sin(3 * z_cheap[:, 1])
                           + 0.02 * torch.randn(60, generator=g, dtype=torch.float64)
                           for f in outputs], -1)
    return [z_main, z_cheap], [y_main, y_cheap]


def test_constrained_picks_stay_feasible_where_unconstrained_ones_do_not() -> None:
    Z, Y = _tasks([lambda z: bowl(z, A), slack], n_main=12)
    mt = MultiTaskOutputs.fit(Z, Y, objectives=1, bounds=BOUNDS, seed=0)
    plain = MultiTaskOutputs.fit(Z, [y[:, :1] for y in Y], objectives=1, bounds=BOUNDS, seed=0)
    assert mt.constraints == 1 and plain.constraints == 0
    feasible = slack(GRID) <= 0
    truth = bowl(GRID, A)
    # the expensive pick: constrained qLogNEI goes to the best feasible region
    picks = mt.pick_expensive(GRID, 3, observed=Z[0])
    assert len(set(picks)) == 3 and bool(feasible[picks].all()), GRID[picks]
    assert float(truth[picks].max()) > float(truth[feasible].quantile(0.85))
    free = plain.pick_expensive(GRID, 3, observed=Z[0])
    assert not bool(feasible[free].any())  # without the constraint: at the infeasible top
    # the cheap pick: UCB x PoF screens the feasible side up to the constraint's edge (where the
    # constrained optimum lies), not the infeasible top the unconstrained UCB goes to
    cheap = mt.pick_cheap(GRID, 8, beta=1.0, pending=Z[0][:1])
    free_cheap = plain.pick_cheap(GRID, 8, beta=1.0, pending=Z[0][:1])
    near = GRID[:, 0] <= 0.45
    assert len(set(cheap)) == 8 and int(near[cheap].sum()) >= 7, GRID[cheap]
    assert int(feasible[cheap].sum()) >= 2 and int(near[free_cheap].sum()) <= 2, GRID[free_cheap]
    # the prefilter keeps the constrained optimum's neighbourhood (high PoF, high UCB)
    order = mt.prefilter(GRID, 40, beta=1.0)
    assert len(order) == 40 and int(feasible[order].sum()) >= 10
    # predictions are in each output's own units (the cheap scale and offset not leaked)
    mean, std = mt.predict_all(GRID)
    assert mean.shape == (400, 2) and bool((std >= 0).all())
    assert float((mean[:, 1] - slack(GRID)).abs().mean()) < 0.05


def _segment_distance(z: torch.Tensor) -> torch.Tensor:
    """Distance of each row to the segment from A to B (the two bowls' Pareto set)."""
    d = B - A
    t = (((z - A) @ d) / (d @ d)).clamp(0, 1)
    return (z - (A + t.unsqueeze(-1) * d)).norm(dim=-1)


def test_pareto_picks_go_to_the_front_and_weights_steer_the_cheap_pick() -> None:
    Z, Y = _tasks([lambda z: bowl(z, A), lambda z: bowl(z, B)], n_main=10, seed=1)
    mt = MultiTaskOutputs.fit(Z, Y, objectives=2, bounds=BOUNDS, seed=0)
    assert mt.objectives == 2 and mt.constraints == 0
    ref = reference_point(Y[0])
    picks = mt.pick_expensive(GRID, 4, observed=Z[0], reference=ref)
    dist = _segment_distance(GRID)
    assert len(set(picks)) == 4
    assert float(dist[picks].max()) < float(dist.quantile(0.3)), (dist[picks], dist.quantile(0.3))
    # ParEGO weights pull the cheap batch along the front: `min_j w_j u_j` is bound by the
    # small-weight objective, so (0.05, 1) favours the first bowl's top and (1, 0.05) the second's
    near_a = mt.pick_cheap(GRID, 6, beta=0.5, weights=(0.05, 1.0))
    near_b = mt.pick_cheap(GRID, 6, beta=0.5, weights=(1.0, 0.05))
    to_a, to_b = (GRID - A).norm(dim=-1), (GRID - B).norm(dim=-1)
    assert float(to_a[near_a].mean()) < float(to_a[near_b].mean())
    assert float(to_b[near_b].mean()) < float(to_b[near_a].mean())
    # warm start: one hyperparameter dict per output, reused as they are without refit
    again = MultiTaskOutputs.fit(Z, Y, objectives=2, bounds=BOUNDS, seed=0,
                                 previous=mt.hyperparameters, refit=False)
    for old, new in zip(mt.hyperparameters, again.hyperparameters, strict=True):
        assert all(torch.equal(old[k], new[k]) for k in old)


def test_constrained_pareto_pick_keeps_to_the_feasible_front() -> None:
    """Two objectives and a constraint (what a Pareto campaign with [[constraints]] models once
    that combination is accepted): qLogNEHVI with ``constraints=`` picks feasible designs near
    the feasible part of the front (the segment A–B where `z₀ ≤ 0.4`)."""
    Z, Y = _tasks([lambda z: bowl(z, A), lambda z: bowl(z, B), slack], n_main=12, seed=1)
    mt = MultiTaskOutputs.fit(Z, Y, objectives=2, bounds=BOUNDS, seed=0)
    assert (mt.objectives, mt.constraints) == (2, 1)
    feasible_obs = Y[0][:, 2] <= 0
    ref = reference_point(Y[0][feasible_obs, :2])
    picks = mt.pick_expensive(GRID, 4, observed=Z[0], reference=ref)
    feasible = slack(GRID) <= 0
    assert len(set(picks)) == 4 and int(feasible[picks].sum()) >= 3, GRID[picks]
    dist = _segment_distance(GRID)
    good = [p for p in picks if bool(feasible[p])]
    assert float(dist[good].min()) < float(dist[feasible].quantile(0.2)), (GRID[picks], dist[good])
    # the cheap pick (ParEGO UCB x PoF) keeps to the feasible side up to the constraint's edge
    cheap = mt.pick_cheap(GRID, 8, beta=0.5, weights=(1.0, 1.0))
    assert int((GRID[cheap, 0] <= 0.45).sum()) >= 7, GRID[cheap]


def test_prefilter_keeps_feasible_designs_ahead_of_far_infeasible_ones() -> None:
    # most of the space is infeasible (z0 > 0.4) where the bowl's UCB is highest: without the
    # floored log-PoF axis and the feasibility-weighted tiebreak of the single-fidelity
    # screening, far-infeasible designs of high UCB fill the kept layers
    Z, Y = _tasks([lambda z: bowl(z, A), slack], n_main=12, seed=1)
    mt = MultiTaskOutputs.fit(Z, Y, objectives=1, bounds=BOUNDS, seed=0)
    P = torch.rand(4000, 2, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    feasible = slack(P) <= 0
    assert 1400 < int(feasible.sum()) < 1800
    for size, least in ((64, 60), (512, 380)):  # without the floor: 0 and 215
        order = mt.prefilter(P, size, beta=2.0)
        assert len(order) == size and len(set(order.tolist())) == size
        assert int(feasible[order].sum()) >= least, (size, int(feasible[order].sum()))


def test_cheap_pick_ranks_by_feasibility_when_every_pof_underflows() -> None:
    # near-noiseless constraint: every candidate (z0 in [0.6, 0.95]) is tens of thousands of
    # σ infeasible, exp(log PoF) is 0 for all, yet the least infeasible are far less so
    g = torch.Generator().manual_seed(3)
    zm = torch.rand(20, 2, generator=g, dtype=torch.float64)
    zc = torch.rand(60, 2, generator=g, dtype=torch.float64)

    def f(z: torch.Tensor) -> torch.Tensor:
        return torch.stack([bowl(z, A), slack(z)], -1)

    mt = MultiTaskOutputs.fit([zm, zc], [f(zm), 2 * f(zc) + 1], objectives=1, bounds=BOUNDS, seed=0)
    C = torch.stack([0.6 + 0.35 * torch.rand(200, generator=g, dtype=torch.float64),
                     torch.rand(200, generator=g, dtype=torch.float64)], -1)
    C = C[torch.argsort(-C[:, 0])]  # the most infeasible first: an all-zero score picks them
    mean, std = mt.predict_all(C)
    lp = log_pof(mean[:, 1:], std[:, 1:] ** 2)
    assert float(lp.max()) < -745.0  # exp underflows to 0 for every candidate
    picks = mt.pick_cheap(C, 4, beta=1.0)
    assert len(set(picks)) == 4
    # each pick among the 10% least infeasible (the bowl's top at z0 = 0.7 is not enough to
    # outweigh thousands of nats of log PoF)
    assert bool((C[picks, 0] <= float(C[:, 0].quantile(0.1))).all()), C[picks]


def test_constrained_expensive_batch_stays_feasible_once_gains_saturate() -> None:
    # a batch larger than the feasible optimum's neighbourhood supports: once the greedy gains
    # are negligible, the largest is an infeasible design's just across the boundary (plain
    # greedy: 4 of 12 feasible); a saturated step picks by single-candidate value instead
    Z, Y = _tasks([lambda z: bowl(z, A), slack], n_main=12)
    mt = MultiTaskOutputs.fit(Z, Y, objectives=1, bounds=BOUNDS, seed=0)
    picks = mt.pick_expensive(GRID, 12, observed=Z[0], pending=Z[0][:1])
    assert len(set(picks)) == 12
    assert int((slack(GRID[picks]) <= 0).sum()) >= 11, GRID[picks]
