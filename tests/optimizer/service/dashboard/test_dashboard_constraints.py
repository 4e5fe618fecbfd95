"""The dashboard's data for a campaign with ``[[constraints]]``: every result marked feasible or
not, the best is the best feasible one, the top designs rank feasible ones first, and a live
delta carries the marks too."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from dashboard_helpers import create_campaign
from optimizer.service.dashboard.data import campaign_bundle
from storage import NewCandidate, Storage

#: (y, c) per query: feasible iff c <= 0; the largest y (9.0) is infeasible
RESULTS = [(9.0, 1.0), (5.0, -1.0), (7.0, 0.0), (8.0, 0.5)]


def _round(storage: Storage, index: int, results: list[tuple[float, float]]) -> list[str]:
    cands = [NewCandidate(design=np.array([float(i), float(index)], dtype=np.float32))
             for i in range(len(results))]
    rec = storage.record_round("cc", index, alpha=0.5, candidates=cands,
                               selected=list(range(len(results))), oracle_name="pull")
    for key, (y, c) in zip(rec.query_keys, results):
        storage.transition_query(key, expected="pending", new="dispatched")
        storage.transition_query(key, expected="dispatched", new="succeeded",
                                 values={"y": y, "c": c})
    return list(rec.query_keys)


def test_points_are_marked_and_the_best_is_feasible(
        storage: Storage, make_config: Callable[..., dict[str, Any]]) -> None:
    create_campaign(storage, "cc", make_config(
        "cc", constraints=[{"name": "c", "op": "<=", "bound": 0.0}]))
    keys = _round(storage, 0, RESULTS)
    b = campaign_bundle(storage, "cc")
    assert b["constraints"] == [{"name": "c", "op": "<=", "bound": 0.0}]
    assert b["points"]["feasible"] == [False, True, True, False]
    assert b["campaign"]["best"] == 7.0 and b["campaign"]["best_key"] == keys[2]
    assert [t["value"] for t in b["top"]] == [7.0, 5.0, 9.0, 8.0]  # feasible first
    assert [t["feasible"] for t in b["top"]] == [True, True, False, False]
    later = _round(storage, 1, [(6.0, -2.0)])
    delta = campaign_bundle(storage, "cc", after=b["cursor"])
    assert delta["points"]["key"] == later and delta["points"]["feasible"] == [True]
