"""qLogNEHVI screening with outcome constraints, on a real BoTorch GP per column: an infeasible
candidate that would dominate the front is not picked while feasible ones extend it (the same
screening without the constraint column picks it, so the test can tell); the reference point is
inferred from the feasible observations only; an objective count excludes constraint columns;
each ParEGO chunk's reward carries `α log PoF`."""
from __future__ import annotations

import pytest
import torch

from optimizer.errors import ConfigError
from optimizer.surrogate import IdentityFeatures, Surrogate, SurrogateConfig
from optimizer.surrogate.acquisition_mo import screening_reference
from optimizer.surrogate.pareto import hypervolume, reference_point
from optimizer.surrogate.screening import screen

F64 = torch.float64
#: feasible iff x1 <= BOUND: the designs that extend the front most (large x1) are infeasible
BOUND = 0.7


def toy(X: torch.Tensor) -> torch.Tensor:
    """Two conflicting objectives (x0 trades one for the other, x1 raises both), then the slack
    of the constraint `x1 ≤ BOUND` (feasible iff `≤ 0`)."""
    return torch.stack([X[:, 0] + X[:, 1], 1.0 - X[:, 0] + X[:, 1], X[:, 1] - BOUND], dim=-1)


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    X = torch.rand(40, 2, generator=g, dtype=F64)
    return X, toy(X) + 0.01 * torch.randn(40, 3, generator=g, dtype=F64)


def fit(X: torch.Tensor, Y: torch.Tensor, k: int, prefilter: int | None = 128) -> Surrogate:
    cfg = SurrogateConfig(fit_maxiter=80, scalarization="parego", num_constraints=k,
                          screen_prefilter_size=prefilter)
    assert cfg.acquisition == "qlognehvi"
    return Surrogate.fit(X, Y, None, feature_map=IdentityFeatures(), config=cfg)


def candidates(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """200 candidates: 40 infeasible that would dominate everything (x1 ≥ 0.9), 40 feasible
    near the bound (x1 in [0.6, 0.68]), 120 poor ones (x1 ≤ 0.3); masks of the first two."""
    g = torch.Generator().manual_seed(seed)

    def band(n: int, lo: float, hi: float) -> torch.Tensor:
        return torch.stack([torch.rand(n, generator=g, dtype=F64),
                            lo + (hi - lo) * torch.rand(n, generator=g, dtype=F64)], -1)

    C = torch.cat([band(120, 0.0, 0.3), band(40, 0.9, 1.0), band(40, 0.6, 0.68)])
    idx = torch.arange(200)
    return C, (idx >= 120) & (idx < 160), idx >= 160


@pytest.mark.parametrize("prefilter", [None, 128])
def test_infeasible_dominating_candidates_are_not_picked(data, prefilter: int | None) -> None:
    X, Y = data
    C, dominating, good = candidates(1)
    plain = screen(fit(X, Y[:, :2], 0, prefilter), C, 4, acquisition="qlognehvi", seed=3)
    # without the constraint the dominating (infeasible) designs win: the test can fail
    assert bool(dominating[plain.selected].all()), plain.selected.tolist()
    sur = fit(X, Y, 1, prefilter)
    res = screen(sur, C, 4, acquisition="qlognehvi", seed=3)
    assert res.acquisition == "qlognehvi" and res.selected.numel() == 4
    assert bool(good[res.selected].all()), res.selected.tolist()
    # the picks raise the feasible front's hypervolume (true values, one reference point)
    V_ok = Y[Y[:, 2] <= 0, :2]
    ref = reference_point(V_ok)
    after = torch.cat([V_ok, toy(C[res.selected])[:, :2]])
    assert hypervolume(after, ref) > hypervolume(V_ok, ref) + 0.05
    if prefilter is None:  # every candidate scored: the acquisition itself ranks them lower
        assert bool(torch.isfinite(res.acq_values).all())
        assert float(res.acq_values[dominating].max()) < float(res.acq_values[res.selected].min())
    else:  # the prefilter's log PoF axis and tiebreak keep the feasible front designs
        assert bool(torch.isfinite(res.acq_values[good]).all())


def test_pending_feasible_designs_move_the_next_picks(data) -> None:
    X, Y = data
    C, _, good = candidates(2)
    sur = fit(X, Y, 1)
    first = screen(sur, C, 2, acquisition="qlognehvi", seed=3)
    again = screen(sur, C, 2, acquisition="qlognehvi", seed=3, pending=C[first.selected])
    assert set(again.selected.tolist()).isdisjoint(first.selected.tolist())
    assert bool(good[first.selected].all()) and bool(good[again.selected].all())


def test_reference_is_inferred_from_feasible_observations(data) -> None:
    X, Y = data
    sur = fit(X, Y, 1)
    signs = torch.ones(2, dtype=F64)
    ok = Y[:, 2] <= 0
    assert 0 < int(ok.sum()) < len(Y)
    got = screening_reference(sur, signs)
    assert torch.allclose(got, reference_point(Y[ok, :2]))
    # the infeasible results extend the raw front: counting them would give another point
    assert not torch.allclose(got, reference_point(Y[:, :2]))
    # none feasible yet: inferred from all results
    none_ok = torch.cat([Y[:, :2], Y[:, 2:].abs() + 1.0], -1)
    sur0 = fit(X, none_ok, 1)
    assert torch.allclose(screening_reference(sur0, signs), reference_point(Y[:, :2]))
    # a given reference counts objectives, not constraint columns
    sur.config = sur.config.model_copy(update={"reference_point": (0.0, None)})
    assert float(screening_reference(sur, signs)[0]) == 0.0
    sur.config = sur.config.model_copy(update={"reference_point": (0.0, None, 1.0)})
    with pytest.raises(ConfigError, match="reference_point.*2 objectives"):
        screening_reference(sur, signs)


def test_one_objective_and_a_constraint_is_refused(data) -> None:
    X, Y = data
    sur = Surrogate.fit(X, Y[:, [0, 2]], None, feature_map=IdentityFeatures(),
                        config=SurrogateConfig(fit_maxiter=20, num_constraints=1))
    with pytest.raises(ConfigError, match="at least two objectives, this one has 1"):
        screen(sur, X + 0.5, 2, acquisition="qlognehvi")


def test_parego_chunk_target_carries_the_pof(data) -> None:
    """Each ParEGO chunk's reward: its own Chebyshev weights on the objective columns, plus
    `α log PoF` (the target `p · exp(r̂/α) · PoF`); weights change the first, never the second."""
    from optimizer.surrogate.constraints import log_pof

    X, Y = data
    sur = fit(X, Y, 1)
    Xq = torch.rand(50, 2, generator=torch.Generator().manual_seed(5), dtype=F64)
    mean, std = sur.posterior_mean_std(Xq)
    lp = log_pof(mean[:, 2:], std[:, 2:] ** 2)
    assert float(lp.max() - lp.min()) > 5.0  # feasible and infeasible queries both present
    for w in [(1.0, 0.2), (0.3, 1.0)]:
        plain = sur.reward(beta=1.0, weights=w)(Xq)
        tilted = sur.reward(beta=1.0, weights=w, alpha=0.4)(Xq)
        assert torch.allclose(tilted - plain, 0.4 * lp, atol=1e-6)
    assert not torch.allclose(sur.reward(beta=1.0, weights=(1.0, 0.2))(Xq),
                              sur.reward(beta=1.0, weights=(0.3, 1.0))(Xq))
