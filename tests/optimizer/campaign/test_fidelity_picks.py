"""The picks of a round with cheap oracles (``FidelityStage``), on multi-task GPs fitted to a few
expensive and many cheap results: the expensive pick keeps to the eligible candidates, stores the
multi-task GP's ``[oracle]``-task prediction with every candidate (what ``alpha = "auto"``'s gap
reads), goes to the feasible side with constraints; what each configuration models; the
cheap oracle's results read as the expensive ones (signed objectives, constraint slacks)."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import torch

from campaign_configs import campaign_config
from optimizer.campaign.fidelity import FidelityStage
from optimizer.campaign.fidelity_outputs import modelled_outputs, task_results
from optimizer.campaign.rounds import RoundPlan, TrainingData
from optimizer.surrogate.multitask_outputs import MultiTaskOutputs
from storage import History, NewCandidate, QueryRecord, Storage
from storage.migrate import upgrade

CHEAP = {"name": "sim", "oracle": {"kind": "http", "base_url": "http://127.0.0.1:9"}}
TOP = np.array([0.7, 0.3])
LAB8, NODB = "http://127.0.0.1:8", "sqlite:////nonexistent/a.db"  # never contacted


def bowl(z: np.ndarray) -> np.ndarray:
    return -4.0 * ((z - TOP) ** 2).sum(-1)


def _fit(constrained: bool) -> tuple[MultiTaskOutputs, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    z_main, z_cheap = rng.random((12, 2)), rng.random((60, 2))

    def outs(z: np.ndarray, cheap: bool) -> np.ndarray:
        y = bowl(z) * (2.0 if cheap else 1.0) + (1.0 if cheap else 0.0)
        cols = [y] + ([z[:, 0] - 0.4] if constrained else [])  # feasible iff z0 <= 0.4
        return np.stack(cols, -1)

    mt = MultiTaskOutputs.fit([torch.as_tensor(z_main), torch.as_tensor(z_cheap)],
                              [torch.as_tensor(outs(z_main, False)), torch.as_tensor(outs(z_cheap, True))],
                              objectives=1, bounds=torch.tensor([[0.0, 0.0], [1.0, 1.0]],
                                                                dtype=torch.float64), seed=0)
    return mt, z_main, outs(z_main, False)


@pytest.mark.parametrize("constrained", [False, True])
def test_expensive_pick_stores_multitask_predictions(tmp_path: Path, constrained: bool) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    upgrade(url)
    extra = {"constraints": [{"name": "c", "op": "<=", "bound": 0.0}]} if constrained else {}
    cfg = campaign_config("p", "gmm-toy", "http://127.0.0.1:8", url, oracles=[CHEAP], **extra)
    mt, z_main, y_main = _fit(constrained)
    grid = np.random.default_rng(5).random((300, 2))
    cands = [NewCandidate(design=z, features=z, log_weight=0.0, group=0, particle=i,
                          surrogate_mean=123.0, surrogate_std=9.0,
                          excluded_reason="queried" if i % 3 == 0 else None)
             for i, z in enumerate(grid)]
    plan = RoundPlan(index=1, alpha=0.5, tilted=True, candidates=cands, selected=[1, 2, 4],
                     surrogate_state={}, surrogate_blob=None, timings={})
    main = TrainingData(X=z_main, Y=y_main, Yvar=None, X_pending=np.zeros((0,)),
                        X_failed=np.zeros((0,)))
    with Storage.open(url) as st:
        stage = FidelityStage(cfg, st, say=lambda _m: None)
        try:
            out = stage._expensive_pick(plan, mt, lambda d: np.asarray(d).reshape(len(d), -1), main, 3)
        finally:
            stage.close()
    mean, std = mt.predict(torch.as_tensor(grid))
    assert [c.surrogate_mean for c in out.candidates] == pytest.approx(mean.tolist())
    assert [c.surrogate_std for c in out.candidates] == pytest.approx(std.tolist())
    assert len(set(out.selected)) == 3 and all(i % 3 for i in out.selected)  # eligible only
    assert out.population_rows is not None and list(out.population_rows) == out.selected
    picked = grid[out.selected]
    truth = bowl(grid)
    if constrained:
        # at the constrained optimum's side of the boundary (its uncertain edge included), far
        # from the unconstrained top at z0 = 0.7
        feasible = grid[:, 0] <= 0.4
        ok = picked[:, 0] <= 0.4
        assert bool((picked[:, 0] <= 0.45).all()) and bool(ok.any()), picked
        assert float(bowl(picked[ok]).max()) > float(np.quantile(truth[feasible], 0.85))
    else:
        assert float(bowl(picked).max()) > float(np.quantile(truth, 0.95))


def test_modelled_outputs_and_cheap_results() -> None:
    plain = campaign_config("a", "gmm-toy", LAB8, NODB, oracles=[CHEAP])
    assert modelled_outputs(plain).names == ("y",)
    con = campaign_config("a", "gmm-toy", LAB8, NODB, oracles=[CHEAP],
                          constraints=[{"name": "c", "op": ">=", "bound": 2.0}],
                          objectives=[{"name": "y", "direction": "minimize"}, {"name": "z"}],
                          oracle={"objectives": ["y", "z", "c"]})
    out = modelled_outputs(con)
    assert (out.objectives, out.names, out.columns(con)) == (1, ("y", "c"), [0, 2])
    par = campaign_config("a", "gmm-toy", LAB8, NODB, oracles=[CHEAP],
                          objectives=[{"name": "y"}, {"name": "z", "direction": "minimize"}],
                          surrogate={"scalarization": "parego"})
    assert modelled_outputs(par).names == ("y", "z") and modelled_outputs(par).objectives == 2

    def rec(key: str, values: dict[str, float]) -> QueryRecord:
        now = datetime.now(timezone.utc)
        return QueryRecord(key=key, campaign="a.sim", round_index=0, candidate_index=0,
                           oracle_name="sim", status="succeeded", job_id=None, attempts=1,
                           values=values, noise=None, error=None, lease_owner=None,
                           lease_expires_at=None, created_at=now, updated_at=now,
                           dispatched_at=now, finished_at=now, design=np.array([1.0, 2.0]))

    history = History(campaign="a.sim", completed=(
        rec("k0", {"y": 3.0, "z": 1.0, "c": 5.0}),
        rec("k1", {"y": 1.0}),  # without the constraint output: left out
        rec("k2", {"y": -1.0, "z": 0.0, "c": 1.0})))
    X, Y = task_results(history, con, out)
    # y minimized: sign-flipped; c >= 2: slack 2 - c (feasible iff <= 0)
    assert X.shape == (2, 2) and Y.tolist() == [[-3.0, -3.0], [1.0, 1.0]]
