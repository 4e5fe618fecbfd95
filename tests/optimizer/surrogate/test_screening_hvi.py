"""qLogNEHVI screening (``acquisition="qlognehvi"``) on a toy two-objective problem with a real
BoTorch GP: it picks candidates that extend the observed front, respects pending designs, and
refuses one objective."""
from __future__ import annotations

import pytest
import torch

from optimizer.errors import ConfigError
from optimizer.surrogate import IdentityFeatures, Surrogate, SurrogateConfig
from optimizer.surrogate.pareto import hypervolume, pareto_mask, reference_point
from optimizer.surrogate.screening import screen

F64 = torch.float64


def toy(X: torch.Tensor) -> torch.Tensor:
    """Two conflicting objectives on `[0, 1]^2`, both maximized: x0 trades one for the other,
    x1 raises both (so large x1 extends the front)."""
    return torch.stack([X[:, 0] + X[:, 1], 1.0 - X[:, 0] + X[:, 1]], dim=-1)


@pytest.fixture(scope="module")
def fitted() -> Surrogate:
    g = torch.Generator().manual_seed(0)
    X = torch.rand(30, 2, generator=g, dtype=F64) * torch.tensor([1.0, 0.6], dtype=F64)
    Y = toy(X) + 0.01 * torch.randn(30, 2, generator=g, dtype=F64)
    cfg = SurrogateConfig(fit_maxiter=80, scalarization="parego")
    assert cfg.acquisition == "qlognehvi"  # the Pareto default
    return Surrogate.fit(X, Y, None, feature_map=IdentityFeatures(), config=cfg)


def candidates(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    good = torch.stack([torch.rand(40, generator=g, dtype=F64),
                        0.85 + 0.15 * torch.rand(40, generator=g, dtype=F64)], -1)
    bad = torch.stack([torch.rand(160, generator=g, dtype=F64),
                       0.3 * torch.rand(160, generator=g, dtype=F64)], -1)
    C = torch.cat([bad, good])
    return C, torch.arange(200) >= 160


def test_picks_candidates_that_extend_the_front(fitted: Surrogate) -> None:
    C, is_good = candidates(1)
    res = screen(fitted, C, 4, acquisition="qlognehvi", seed=3)
    assert res.acquisition == "qlognehvi" and res.selected.numel() == 4
    assert bool(is_good[res.selected].all()), res.selected.tolist()
    V_obs = fitted.train_Y
    ref = reference_point(V_obs)
    before = hypervolume(V_obs, ref)
    after = hypervolume(torch.cat([V_obs, toy(C[res.selected])]), ref)
    assert after > before + 0.05
    # the batch spreads along the front: its true values are mutually non-dominated
    assert pareto_mask(toy(C[res.selected])).all()
    # the scored candidates include every good one (the layers prefilter keeps the front)
    assert torch.isfinite(res.acq_values[is_good]).all()


def test_pending_designs_are_respected(fitted: Surrogate) -> None:
    C, is_good = candidates(2)
    first = screen(fitted, C, 2, acquisition="qlognehvi", seed=3)
    pending = C[first.selected]
    again = screen(fitted, C, 2, acquisition="qlognehvi", seed=3, pending=pending)
    # the in-flight designs are excluded, and the new picks are not the same designs
    assert set(again.selected.tolist()).isdisjoint(first.selected.tolist())
    assert all(e.reason == "pending" for e in again.exclusions if int(e.index) in
               first.selected.tolist())
    assert bool(is_good[again.selected].all())


def test_given_reference_point_is_used(fitted: Surrogate) -> None:
    C, is_good = candidates(1)
    sur = Surrogate(fitted.models, feature_map=fitted.feature_map,
                    config=fitted.config.model_copy(update={"reference_point": (0.0, None)}),
                    X=fitted.train_X, Y=fitted.train_Y, Yvar=None, Z=fitted.train_Z,
                    cond_idx=fitted.cond_idx, bounds=fitted.bounds, fit_info=fitted.fit_info)
    res = screen(sur, C, 3, acquisition="qlognehvi", seed=3)
    assert bool(is_good[res.selected].all())
    bad = sur.config.model_copy(update={"reference_point": (0.0,)})
    sur.config = bad
    with pytest.raises(ConfigError, match="reference_point"):
        screen(sur, C, 3, acquisition="qlognehvi", seed=3)


def test_one_objective_is_refused() -> None:
    X = torch.rand(8, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    sur = Surrogate.fit(X, X[:, :1], None, feature_map=IdentityFeatures(),
                        config=SurrogateConfig(fit_maxiter=20))
    with pytest.raises(ConfigError, match="at least two objectives"):
        screen(sur, X + 0.5, 2, acquisition="qlognehvi")
