"""A Pareto campaign with cheap oracles: the hypervolume reference point is inferred from the
feasible expensive results (all of them while none is feasible), as the single-fidelity path
does (an infeasible result that dominates every feasible one must not move it); cheap oracle
`j`'s ParEGO weights are drawn from the campaign seed per round and chunk `j − 1`."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from campaign_configs import campaign_config
from optimizer.campaign.fidelity import FidelityStage
from optimizer.campaign.rounds import TrainingData
from optimizer.campaign.pareto_round import chunk_weights
from optimizer.surrogate.pareto import hypervolume, parego_weights, reference_point

CHEAP = {"name": "sim", "oracle": {"kind": "http", "base_url": "http://127.0.0.1:9"}}
LAB8, NODB = "http://127.0.0.1:8", "sqlite:////nonexistent/a.db"  # never contacted
# two maximized objectives, then the constraint's slack (feasible <= 0)
Y = np.array([[10.0, 10.0, 5.0],   # infeasible, dominates every other row
              [9.0, 1.0, 3.0],     # infeasible
              [1.0, 9.0, 3.0],     # infeasible
              [3.0, 3.0, -1.0],
              [4.0, 2.0, -1.0],
              [2.0, 4.0, -1.0]])


def _config(surrogate: dict[str, Any], oracles: list[Any] = [CHEAP]) -> Any:  # noqa: B006
    return campaign_config("p", "gmm-toy", LAB8, NODB, oracles=oracles,
                           objectives=[{"name": "y"}, {"name": "z"}],
                           constraints=[{"name": "c", "op": "<=", "bound": 0.0}],
                           oracle={"objectives": ["y", "z", "c"]}, surrogate=surrogate)


def _reference(Y: np.ndarray) -> torch.Tensor:
    cfg = _config({"acquisition": "qlognehvi"})
    main = TrainingData(X=np.zeros((len(Y), 2)), Y=Y, Yvar=None, X_pending=np.zeros((0,)),
                        X_failed=np.zeros((0,)))
    stage = FidelityStage(cfg, None, say=lambda _m: None)  # type: ignore[arg-type]  # not read
    try:
        ref = stage._reference(main)
    finally:
        stage.close()
    assert ref is not None
    return ref


def test_reference_point_ignores_infeasible_results() -> None:
    ok = Y[:, 2] <= 0
    ref = _reference(Y)
    assert ref.tolist() == reference_point(Y[ok, :2]).tolist()
    # the infeasible front's reference would leave the feasible results no hypervolume at all
    assert hypervolume(Y[ok, :2], reference_point(Y[:, :2])) == 0.0
    assert hypervolume(Y[ok, :2], ref) > 0.0


def test_reference_point_from_all_results_while_none_is_feasible() -> None:
    infeasible = Y[:3]
    assert _reference(infeasible).tolist() == reference_point(infeasible[:, :2]).tolist()


def test_cheap_weights_drawn_per_round_and_chunk_from_the_seed() -> None:
    two = [CHEAP, {**CHEAP, "name": "sim2"}]
    parego = _config({"scalarization": "parego"}, two)
    hvi = _config({"acquisition": "qlognehvi"}, two)
    assert chunk_weights(hvi, 3) == [None] * hvi.workers.num_chunks  # no chunk is scalarized
    for cfg in (parego, hvi):
        stage = FidelityStage(cfg, None, say=lambda _m: None)  # type: ignore[arg-type]
        try:
            for index in (3, 4):
                for j in (1, 2):
                    chunk = (j - 1) % cfg.workers.num_chunks
                    w = parego_weights(cfg.seed, index, chunk, 2)
                    assert stage._cheap_weights(index, j) == tuple(x / max(w) for x in w)
                    if cfg is parego:  # the weights of that chunk's SMC target
                        assert stage._cheap_weights(index, j) == chunk_weights(cfg, index)[chunk]
            assert stage._cheap_weights(3, 1) != stage._cheap_weights(4, 1)
        finally:
            stage.close()
